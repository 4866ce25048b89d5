// The edge proxy's upstream trust (runbook Part 4, "proxy CA chain refresh"):
// its bundle holds the PKI's issuing chain as Vault has it now, nothing else,
// so an intermediate rotation on the Vault side is one `pulumi up` away from a
// proxy that trusts the new leaves. One per stack.
import * as pulumi from "@pulumi/pulumi";
import type { VaultConnection } from "../providers/connection";
import { IssuingChain } from "../providers/issuingChain";
import { hostCommand, HostTarget } from "./hostCommand";
import { renderEdgeTrustScript } from "./renderers/scripts";

export interface EdgeTrustArgs {
    /** How the chain is read (unauthenticated: no secrets). */
    connection: VaultConnection;
    /** PKI mount whose issuing chain the proxy must trust. */
    pkiMount: string;
    /** The proxy's Unix user (never an app's) and its home. */
    user: string;
    home: string;
    /** The host the proxy runs on. */
    host: HostTarget;
    /** The bundle's path, inside `home`. */
    bundle: string;
    /** The proxy's container name (podman). */
    container: string;
    /** `signal` when it re-reads trust on a signal, `restart` when it cannot. */
    trustReload: "signal" | "restart";
    signal: string;
}

export class EdgeTrust extends pulumi.ComponentResource {
    /** sha256 of the chain the bundle holds. */
    public readonly chainDigest: pulumi.Output<string>;
    /** The step that wrote the bundle: checks through the proxy come after it. */
    public readonly bundleWritten: pulumi.Resource;

    constructor(name: string, args: EdgeTrustArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vault-rotation:components:EdgeTrust", name, {}, opts);
        const chain = new IssuingChain(`${name}-issuing-chain`, { connection: args.connection, pkiMount: args.pkiMount }, { parent: this });
        // The chain is in the script: a new chain is a changed command, which re-runs it; an unchanged one runs nothing.
        const bundle = hostCommand(
            `${name}-trust-bundle`,
            args.host,
            {
                script: chain.chainPem.apply((chainPem) =>
                    renderEdgeTrustScript({
                        app: "edge",
                        user: args.user,
                        home: args.home,
                        hostPath: args.host.path,
                        timeoutSeconds: args.host.stepTimeoutSeconds,
                        bundle: args.bundle,
                        chainPem,
                        container: args.container,
                        trustReload: args.trustReload,
                        signal: args.signal,
                    }),
                ),
            },
            { parent: this },
        );
        this.chainDigest = chain.digest;
        this.bundleWritten = bundle;
        this.registerOutputs({ chainDigest: this.chainDigest });
    }
}
