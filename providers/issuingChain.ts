// IssuingChain: the PKI mount's issuing chain (intermediate + root), read from
// Vault's unauthenticated `<pki>/cert/ca_chain`. It is what the edge proxy's
// upstream trust bundle must hold (runbook Part 4, "proxy CA chain refresh"),
// and what the served-certificate check verifies a handshake against.
//
// An object that changes outside Pulumi: `diff` reads the live chain, so after
// an intermediate rotation on the Vault side the next `pulumi up` shows an
// update and rewrites the bundle; an unchanged chain is a no-op.
import * as pulumi from "@pulumi/pulumi";
import { forwardingProvider } from "./forward";
import type { VaultConnection } from "./connection";
import { splitPemCertificates } from "./pem";
import { asRecord, asString, changedKeys, clientForConnection, connectionProblems, isUnknownInput, mountPathProblem } from "./vaultClient";
import { sha256Hex } from "../lib/digest";

export interface IssuingChainInputs {
    connection: VaultConnection;
    pkiMount: string;
}

export interface IssuingChainOutputs extends IssuingChainInputs {
    /** Intermediate then root, PEM, one trailing newline. */
    chainPem: string;
    /** sha256 of chainPem, hex. */
    digest: string;
}

/** The chain as Vault serves it, normalised: certificate blocks only, one newline between them. */
export async function fetchIssuingChain(connection: VaultConnection, pkiMount: string): Promise<string> {
    const client = clientForConnection(connection, { withToken: false });
    const res = await client.request("GET", `${pkiMount}/cert/ca_chain`, undefined, { noToken: true });
    const pem = asString(asRecord(asRecord(res.body).data).certificate) ?? "";
    const blocks = splitPemCertificates(pem);
    if (blocks.length === 0) throw new Error(`${pkiMount}/cert/ca_chain: no certificate in Vault's answer; is ${pkiMount} a PKI mount with an issuer?`);
    return `${blocks.map((b) => b.trim()).join("\n")}\n`;
}

async function readChain(inputs: IssuingChainInputs): Promise<IssuingChainOutputs> {
    const chainPem = await fetchIssuingChain(inputs.connection, inputs.pkiMount);
    return { ...inputs, chainPem, digest: sha256Hex(chainPem) };
}

export const issuingChainProvider: pulumi.dynamic.ResourceProvider<IssuingChainInputs, IssuingChainOutputs> = {
    async check(_olds, news) {
        const failures = connectionProblems(news.connection);
        const problem = isUnknownInput(news.pkiMount) ? undefined : mountPathProblem(news.pkiMount);
        if (problem) failures.push({ property: "pkiMount", reason: problem });
        return { inputs: news, failures };
    },

    // Changed inputs, or a live chain that differs from the recorded one, is an update.
    async diff(_id, olds, news) {
        const changed = changedKeys(olds, news, ["connection", "pkiMount"]);
        if (changed.length > 0) return { changes: true };
        if (isUnknownInput(news.pkiMount)) return { changes: false };
        const live = sha256Hex(await fetchIssuingChain(news.connection, news.pkiMount));
        return { changes: live !== olds.digest };
    },

    async create(inputs) {
        const outs = await readChain(inputs);
        return { id: `${inputs.pkiMount}/cert/ca_chain`, outs };
    },

    async update(_id, _olds, news) {
        return { outs: await readChain(news) };
    },

    async read(id, props) {
        if (!props) throw new Error(`IssuingChain ${id}: cannot read without its previous state`);
        return { id, props: await readChain(props) };
    },

    // Nothing of Vault's is owned here.
    async delete() {},
};

export interface IssuingChainArgs {
    connection: pulumi.Input<VaultConnection>;
    pkiMount: pulumi.Input<string>;
}

const issuingChainForwarder = forwardingProvider("issuingChainProvider", issuingChainProvider);

/** The PKI's issuing chain as it is in Vault now. */
export class IssuingChain extends pulumi.dynamic.Resource {
    public readonly chainPem!: pulumi.Output<string>;
    public readonly digest!: pulumi.Output<string>;

    constructor(name: string, args: IssuingChainArgs, opts?: pulumi.CustomResourceOptions) {
        super(issuingChainForwarder, name, { ...args, chainPem: undefined, digest: undefined }, opts, "vault-rotation", "IssuingChain");
    }
}
