// What @vault-rotation/providers exports: the provider objects the forwarders
// call, by the export names given to forwardingProvider() in each resource module.
export { certRevocationProvider } from "./certRevocation";
export { kvMountProvider } from "./kvMount";
export { kvSeedProvider } from "./kvSeed";
export { rotationCheckProvider } from "./rotationCheck";
export { issuingChainProvider } from "./issuingChain";
export { certAuthMountProvider } from "./certAuthMount";
export { vaultTakeoverProvider } from "./vaultTakeover";
export { destroyGuardProvider } from "./destroyGuard";
export { verificationCheckProvider } from "./verificationCheck";
