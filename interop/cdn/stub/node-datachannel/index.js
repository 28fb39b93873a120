// No WebRTC here: any use says so. WebTorrent only constructs these for WebRTC peers,
// which a TCP-only swarm never has.
const none = (name) => class { constructor () { throw new Error(`${name}: WebRTC is not available (node-datachannel stub)`) } }
export const PeerConnection = none('PeerConnection')
export const RtcpReceivingSession = none('RtcpReceivingSession')
export const Video = none('Video')
export const Audio = none('Audio')
export const DataChannel = none('DataChannel')
export function cleanup () {}
export default { PeerConnection, RtcpReceivingSession, Video, Audio, DataChannel, cleanup }
