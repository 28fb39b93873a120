// Hardhat's local node, the reference `nodus bench chain` measures nodus beside:
// the same chain id and development accounts, mining each transaction at once.
module.exports = {
  networks: { hardhat: { chainId: 31337 } },
};
