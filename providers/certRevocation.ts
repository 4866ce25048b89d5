// CertRevocation: records an issued certificate and revokes it when the record
// is deleted. A replaced agent cert is revoked this way: Pulumi creates the
// successor (and everything that depends on it) first and deletes the replaced
// record last, so the old cert stays usable until the new one is in place.
//
// Pulumi runs this provider through a forwarder (forward.ts) that loads it by
// package name (@vault-rotation/providers), so its imports are ordinary ones.
import * as pulumi from "@pulumi/pulumi";
import { forwardingProvider } from "./forward";
import type { VaultConnection } from "./connection";
import { normalizeSerial } from "./pem";
import { asRecord, asString, changedKeys, clientForConnection, connectionProblems, isUnknownInput, mountPathProblem, VaultHttpError } from "./vaultClient";

export interface CertRevocationInputs {
    connection: VaultConnection;
    /** PKI mount that issued the certificate, e.g. `pki_int`. */
    pkiMount: string;
    /** The certificate's serial (Vault's colon form or plain hex; stored in colon form). */
    serialNumber: string;
    /**
     * Mount path of the cert auth method that logs in with this cert. Vault's cert
     * auth does not consult the PKI mount's revocations: it checks only CRLs
     * registered with it. After revoking, the CRL of every issuer of the mount is
     * copied to `auth/<certAuthPath>/crls/` (syncCrlToCertAuth) so the revoked cert
     * stops logging in, whichever issuer signed it.
     */
    certAuthPath?: string;
}

export type CertRevocationOutputs = CertRevocationInputs;

const REPLACE_ON: readonly (keyof CertRevocationInputs)[] = ["pkiMount", "serialNumber"];

/**
 * Whether a refusal from `<pki>/revoke` means there is nothing left to revoke:
 * the cert is already revoked, already expired (Vault will not list it on a CRL),
 * or gone from Vault's store (tidy removes only expired certs).
 */
export function revocationNotNeeded(messages: readonly string[]): boolean {
    return messages.some((m) => /already (been )?revoked|already expired|expired.*refusing|not found/i.test(m));
}

/**
 * Revokes `serial` on the PKI mount. Already revoked, already expired or gone
 * from Vault's store (revocationNotNeeded) counts as done; any other refusal throws.
 */
export async function revokeSerial(client: ReturnType<typeof clientForConnection>, pkiMount: string, serial: string): Promise<void> {
    try {
        // Already revoked and already expired both come back 200 (the latter with a
        // warning) from current Vault; older versions answered 400 for some of them.
        await client.write(`${pkiMount}/revoke`, { serial_number: serial });
    } catch (e) {
        if (!(e instanceof VaultHttpError && e.status === 400 && revocationNotNeeded(e.errors))) throw e;
    }
}

/** The name under which a PKI mount's CRL is registered with the cert auth method. */
export function crlName(pkiMount: string): string {
    return pkiMount.replace(/\//g, "-");
}

/**
 * Copies the CRL of every issuer of the PKI mount (rebuilt by the revoke) into
 * the cert auth method: the default issuer's under `crlName(pki)`, and each
 * issuer's under `<crlName(pki)>-<issuer id>`. Cert auth consults only CRLs
 * registered with it, and `<pki>/cert/crl` is the default issuer's alone: after
 * an intermediate rotation, a cert revoked under the previous issuer would be on
 * no CRL that cert auth has. Issuers without a key (an imported root) have no
 * CRL of their own and are passed over.
 */
export async function syncCrlToCertAuth(client: ReturnType<typeof clientForConnection>, pkiMount: string, certAuthPath: string): Promise<void> {
    const body = asRecord(await client.read(`${pkiMount}/cert/crl`));
    const crl = asString(asRecord(body.data).certificate);
    if (!crl || !crl.includes("BEGIN X509 CRL")) {
        throw new Error(`revoked the cert, but ${pkiMount}/cert/crl returned no CRL to give to auth/${certAuthPath}: the old cert may still log in`);
    }
    await client.write(`auth/${certAuthPath}/crls/${crlName(pkiMount)}`, { crl });
    for (const issuer of await client.list(`${pkiMount}/issuers`)) {
        const info = asRecord(asRecord(await client.read(`${pkiMount}/issuer/${issuer}`)).data);
        if (!asString(info.key_id)) continue;
        const issuerCrl = asString(asRecord(asRecord(await client.read(`${pkiMount}/issuer/${issuer}/crl`)).data).crl);
        if (!issuerCrl || !issuerCrl.includes("BEGIN X509 CRL")) {
            throw new Error(`revoked the cert, but ${pkiMount}/issuer/${issuer}/crl returned no CRL to give to auth/${certAuthPath}: a cert of that issuer may still log in`);
        }
        await client.write(`auth/${certAuthPath}/crls/${crlName(pkiMount)}-${issuer}`, { crl: issuerCrl });
    }
}

/**
 * Revokes every token that cert auth issued for the certificate: revoking the
 * cert stops new logins, but a token it obtained before would otherwise keep
 * working (and issuing leaves) until its TTL. Cert auth records the login cert's
 * serial in each token's metadata (`serial_number`, decimal). Tokens are found
 * by their accessors (`auth/token/accessors`, which needs `sudo`): one lookup
 * per live token of the Vault. Returns how many were revoked.
 */
export async function revokeTokensOfCert(client: ReturnType<typeof clientForConnection>, serialNumber: string, certAuthPath: string): Promise<number> {
    const decimal = BigInt(`0x${serialNumber.replace(/:/g, "")}`).toString();
    let revoked = 0;
    for (const accessor of await client.list("auth/token/accessors")) {
        let data: Record<string, unknown>;
        try {
            data = asRecord(asRecord(await client.write("auth/token/lookup-accessor", { accessor })).data);
        } catch (e) {
            // Gone (expired or revoked) between the list and the lookup.
            if (e instanceof VaultHttpError && e.status === 400) continue;
            throw e;
        }
        const meta = asRecord(data.meta);
        if (asString(data.path) !== `auth/${certAuthPath}/login` || asString(meta.serial_number) !== decimal) continue;
        await client.write("auth/token/revoke-accessor", { accessor });
        revoked++;
    }
    return revoked;
}

export const certRevocationProvider: pulumi.dynamic.ResourceProvider<CertRevocationInputs, CertRevocationOutputs> = {
    async check(_olds, news) {
        const failures = connectionProblems(news.connection);
        if (!isUnknownInput(news.pkiMount)) {
            const problem = mountPathProblem(news.pkiMount);
            if (problem) failures.push({ property: "pkiMount", reason: problem });
        }
        let serialNumber = news.serialNumber;
        if (!isUnknownInput(serialNumber)) {
            try {
                serialNumber = normalizeSerial(String(serialNumber ?? ""));
                if (serialNumber === "") throw new Error("empty");
            } catch {
                failures.push({ property: "serialNumber", reason: "must be a certificate serial in hex, e.g. 3a:1f:09 or 3a1f09" });
            }
        }
        return { inputs: { ...news, serialNumber }, failures };
    },

    async diff(_id, olds, news) {
        const replaces = changedKeys(olds, news, REPLACE_ON);
        const changes = replaces.length > 0 || changedKeys(olds, news, ["connection", "certAuthPath"]).length > 0;
        // Revoking first would break the agent before its successor cert exists.
        return { changes, replaces, deleteBeforeReplace: false };
    },

    async create(inputs) {
        // Recording only: the cert is the live one until a successor replaces it.
        return { id: `${inputs.pkiMount}:${inputs.serialNumber}`, outs: { connection: inputs.connection, pkiMount: inputs.pkiMount, serialNumber: inputs.serialNumber, certAuthPath: inputs.certAuthPath } };
    },

    async update(_id, _olds, news) {
        return { outs: { connection: news.connection, pkiMount: news.pkiMount, serialNumber: news.serialNumber, certAuthPath: news.certAuthPath } };
    },

    async delete(_id, props) {
        const client = clientForConnection(props.connection);
        await revokeSerial(client, props.pkiMount, props.serialNumber);
        if (props.certAuthPath) {
            await syncCrlToCertAuth(client, props.pkiMount, props.certAuthPath);
            await revokeTokensOfCert(client, props.serialNumber, props.certAuthPath);
        }
    },
};

export interface CertRevocationArgs {
    /** Where Vault is; the token comes from VAULT_TOKEN when the provider runs. */
    connection: pulumi.Input<VaultConnection>;
    /** PKI mount that issued the certificate. */
    pkiMount: pulumi.Input<string>;
    /** Serial of the certificate to revoke when this resource is replaced or deleted. */
    serialNumber: pulumi.Input<string>;
    /** Cert auth mount that must stop accepting the revoked cert (its CRL is refreshed). */
    certAuthPath?: pulumi.Input<string>;
}

// What each CertRevocation serializes as its provider: a ~1 KB forwarder to certRevocationProvider, loaded by package name (forward.ts).
const certRevocationForwarder = forwardingProvider("certRevocationProvider", certRevocationProvider);

/** Revokes the recorded certificate when deleted (including after a replacement). */
export class CertRevocation extends pulumi.dynamic.Resource {
    public readonly connection!: pulumi.Output<VaultConnection>;
    public readonly pkiMount!: pulumi.Output<string>;
    public readonly serialNumber!: pulumi.Output<string>;

    constructor(name: string, args: CertRevocationArgs, opts?: pulumi.CustomResourceOptions) {
        super(certRevocationForwarder, name, { ...args }, { ...opts }, "vault-rotation", "CertRevocation");
    }
}
