// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// The ERC-20 the interop test and the demo deploy: OpenZeppelin's, unchanged.
contract Token is ERC20 {
    constructor(uint256 supply) ERC20("Nodus Token", "NOD") {
        _mint(msg.sender, supply);
    }
}
