// Brings a fresh dev Vault to the shape production has *before* this program
// runs: the KV mounts and the root + intermediate PKI already exist. What the
// program itself declares (cert auth, roles, policies) is deliberately left
// out so that the tests exercise the program's own declarations.
import * as fs from "fs";
import { httpsRequest } from "./vaultServer";

/** What a test needs to talk to a server; a `VaultServer` is one. */
export interface VaultConnection {
    address: string;
    caCertFile: string;
    /** Root token; used by `vaultRequest` unless told otherwise. */
    token?: string;
}

/** Environment variables through which the integration global setup publishes its server. */
export const TEST_VAULT_ENV = {
    addr: "VAULT_ROTATION_TEST_ADDR",
    ca: "VAULT_ROTATION_TEST_CA",
    token: "VAULT_ROTATION_TEST_TOKEN",
    bin: "VAULT_ROTATION_TEST_BIN",
    version: "VAULT_ROTATION_TEST_VERSION",
} as const;

export interface TestVault extends VaultConnection {
    token: string;
    vaultBin: string;
    version: string;
}

/** The shared integration server, from the variables globalSetup exported. */
export function testVaultFromEnv(): TestVault {
    const get = (name: string): string => {
        const v = process.env[name];
        if (!v) {
            throw new Error(
                `${name} is not set: run this test in the jest "integration" project, whose globalSetup starts Vault`,
            );
        }
        return v;
    };
    return {
        address: get(TEST_VAULT_ENV.addr),
        caCertFile: get(TEST_VAULT_ENV.ca),
        token: get(TEST_VAULT_ENV.token),
        vaultBin: get(TEST_VAULT_ENV.bin),
        version: get(TEST_VAULT_ENV.version),
    };
}

export type VaultJson = { [key: string]: unknown };

export interface VaultRequestOptions {
    /** Token to send; default the connection's token; `null` sends none (e.g. for cert login). */
    token?: string | null;
    /** Client certificate/key (PEM) presented in the TLS handshake, for `auth/cert/login`. */
    clientCertPem?: string;
    clientKeyPem?: string;
    headers?: Record<string, string>;
}

export interface VaultResponse<T = VaultJson> {
    status: number;
    /** Parsed JSON body; `{}` when the body is empty (e.g. 204). */
    body: T;
    /** The raw body text. */
    text: string;
}

const caCache = new Map<string, string>();
function caPem(file: string): string {
    let pem = caCache.get(file);
    if (pem === undefined) {
        pem = fs.readFileSync(file, "utf8");
        caCache.set(file, pem);
    }
    return pem;
}

/**
 * One Vault API call. `apiPath` is relative to /v1 ("sys/health"; a leading
 * "/" or "/v1/" is accepted too). Never throws on HTTP errors: tests assert on
 * `status` (the least-privilege matrix expects 403s).
 */
export async function vaultRequest<T = VaultJson>(
    server: VaultConnection,
    method: string,
    apiPath: string,
    body?: unknown,
    opts: VaultRequestOptions = {},
): Promise<VaultResponse<T>> {
    const rel = apiPath.replace(/^\/+/, "").replace(/^v1\//, "");
    const token = opts.token === undefined ? server.token : opts.token;
    const res = await httpsRequest({
        address: server.address,
        ca: caPem(server.caCertFile),
        method: method.toUpperCase(),
        path: `/v1/${rel}`,
        headers: { ...(token ? { "X-Vault-Token": token } : {}), ...opts.headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        cert: opts.clientCertPem,
        key: opts.clientKeyPem,
    });
    let parsed: unknown = {};
    if (res.text.trim() !== "") {
        try {
            parsed = JSON.parse(res.text);
        } catch {
            // Some endpoints (e.g. pki/ca/pem) answer with plain text; keep it in `text`.
            parsed = {};
        }
    }
    return { status: res.status, body: parsed as T, text: res.text };
}

/** Like vaultRequest with the root token, but throws unless the status is 2xx. */
async function must<T = VaultJson>(
    server: VaultConnection,
    what: string,
    method: string,
    apiPath: string,
    body?: unknown,
): Promise<VaultResponse<T>> {
    const res = await vaultRequest<T>(server, method, apiPath, body);
    if (res.status < 200 || res.status > 299) {
        const errors = (res.body as { errors?: unknown }).errors;
        const detail = Array.isArray(errors) ? errors.join("; ") : res.text.slice(0, 300);
        throw new Error(`${what}: ${method} ${apiPath} answered ${res.status}: ${detail}`);
    }
    return res;
}

interface MountInfo {
    type?: string;
    options?: { version?: string } | null;
}

/** Mounts `type` at `mount` unless it is already there; refuses a different engine or KV version. */
async function ensureMount(
    server: VaultConnection,
    mount: string,
    type: string,
    options?: { version: string },
    config?: Record<string, string>,
): Promise<void> {
    const existing = await vaultRequest<{ data?: MountInfo }>(server, "GET", `sys/mounts/${mount}`);
    if (existing.status === 200 && existing.body.data) {
        const got = existing.body.data;
        // KV v1 mounts may report no options at all.
        const gotVersion = got.options?.version ?? (got.type === "kv" ? "1" : undefined);
        if (got.type !== type || (options && gotVersion !== options.version)) {
            throw new Error(
                `${mount}/ is already mounted as ${got.type} (version ${gotVersion ?? "-"}), wanted ${type}` +
                    (options ? ` version ${options.version}` : ""),
            );
        }
        return;
    }
    await must(server, `mount ${type} at ${mount}/`, "POST", `sys/mounts/${mount}`, {
        type,
        ...(options ? { options } : {}),
        ...(config ? { config } : {}),
    });
}

/** The mount's default issuer certificate, or undefined when it has none yet. */
async function defaultIssuerPem(server: VaultConnection, mount: string): Promise<string | undefined> {
    const res = await vaultRequest<{ data?: { certificate?: string } }>(server, "GET", `${mount}/cert/ca`);
    const pem = res.status === 200 ? res.body.data?.certificate?.trim() : undefined;
    return pem ? pem : undefined;
}

export interface ProductionLikeOptions {
    /** Root CA mount; default "pki". */
    pkiRoot?: string;
    /** Intermediate (issuing) CA mount used by the program; default "pki_int". */
    pkiMount?: string;
    /** CN of the intermediate; default "Prod Intermediate CA". */
    issuerCommonName?: string;
    /** KV v2 mount; default "secret" (which the dev server already has). */
    kvV2Mount?: string;
    /** KV v1 mount; default "kv1". */
    kvV1Mount?: string;
}

export interface ProductionLikeVault {
    rootCaPem: string;
    intermediateCaPem: string;
    pkiRoot: string;
    pkiMount: string;
    kvV2Mount: string;
    kvV1Mount: string;
}

/** Idempotent: mounts and CAs that already exist are kept. */
/** The auth methods Vault lists (`sys/auth`), keyed `<path>/`; newer Vault nests the list under `data`. */
export async function enabledAuthMethods(server: VaultConnection): Promise<Record<string, { type: string; description: string }>> {
    const r = await vaultRequest<Record<string, unknown>>(server, "GET", "sys/auth");
    if (r.status !== 200) throw new Error(`GET sys/auth: ${r.status}`);
    return ((r.body.data as Record<string, unknown> | undefined) ?? r.body) as Record<string, { type: string; description: string }>;
}

export async function setupProductionLikeVault(
    server: VaultConnection,
    opts: ProductionLikeOptions = {},
): Promise<ProductionLikeVault> {
    const pkiRoot = opts.pkiRoot ?? "pki";
    const pkiMount = opts.pkiMount ?? "pki_int";
    const issuerCommonName = opts.issuerCommonName ?? "Prod Intermediate CA";
    const kvV2Mount = opts.kvV2Mount ?? "secret";
    const kvV1Mount = opts.kvV1Mount ?? "kv1";

    await ensureMount(server, kvV2Mount, "kv", { version: "2" });
    await ensureMount(server, kvV1Mount, "kv", { version: "1" });

    // Root CA: 10 years, as a production offline-ish root would have.
    await ensureMount(server, pkiRoot, "pki", undefined, { max_lease_ttl: "87600h" });
    let rootCaPem = await defaultIssuerPem(server, pkiRoot);
    if (!rootCaPem) {
        const root = await must<{ data: { certificate: string } }>(
            server,
            "generate root CA",
            "POST",
            `${pkiRoot}/root/generate/internal`,
            { common_name: "Prod Root CA", key_type: "ec", key_bits: 256, ttl: "87600h", issuer_name: "prod-root" },
        );
        rootCaPem = root.body.data.certificate.trim();
    }

    // Intermediate: key generated inside Vault, CSR signed by the root, then
    // installed; this is the issuer the program's roles issue from.
    await ensureMount(server, pkiMount, "pki", undefined, { max_lease_ttl: "43800h" });
    let intermediateCaPem = await defaultIssuerPem(server, pkiMount);
    if (!intermediateCaPem) {
        const csr = await must<{ data: { csr: string } }>(
            server,
            "intermediate CSR",
            "POST",
            `${pkiMount}/intermediate/generate/internal`,
            { common_name: issuerCommonName, key_type: "ec", key_bits: 256 },
        );
        // pem_bundle = intermediate followed by the root, as in HashiCorp's
        // tutorial: set-signed then also imports the root (keyless) so issued
        // leaves carry the full chain in `ca_chain`.
        const signed = await must<{ data: { certificate: string } }>(
            server,
            "sign intermediate",
            "POST",
            `${pkiRoot}/root/sign-intermediate`,
            { csr: csr.body.data.csr, common_name: issuerCommonName, format: "pem_bundle", ttl: "43800h" },
        );
        await must(server, "install intermediate", "POST", `${pkiMount}/intermediate/set-signed`, {
            certificate: signed.body.data.certificate,
        });
        intermediateCaPem = await defaultIssuerPem(server, pkiMount);
        if (!intermediateCaPem) throw new Error(`${pkiMount} has no default issuer after set-signed`);
    }

    return { rootCaPem, intermediateCaPem, pkiRoot, pkiMount, kvV2Mount, kvV1Mount };
}

/**
 * An intermediate rotation on the Vault side: a new key and issuer under the
 * same CN, signed by the same root, made the mount's default issuer. Returns
 * the new issuing chain as `<pki>/cert/ca_chain` then serves it.
 */
export async function rotateIntermediate(server: VaultConnection, pkiRoot: string, pkiMount: string, commonName: string): Promise<string> {
    const csr = await must<{ data: { csr: string } }>(server, "new intermediate CSR", "POST", `${pkiMount}/intermediate/generate/internal`, { common_name: commonName, key_type: "ec", key_bits: 256 });
    const signed = await must<{ data: { certificate: string } }>(server, "sign new intermediate", "POST", `${pkiRoot}/root/sign-intermediate`, {
        csr: csr.body.data.csr,
        common_name: commonName,
        format: "pem_bundle",
        ttl: "43800h",
    });
    const installed = await must<{ data: { imported_issuers?: string[] } }>(server, "install new intermediate", "POST", `${pkiMount}/intermediate/set-signed`, {
        certificate: signed.body.data.certificate,
    });
    const issuers = installed.body.data.imported_issuers ?? [];
    // The first imported issuer is the intermediate itself (the root comes after it in the bundle).
    if (issuers.length > 0) await must(server, "make the new intermediate the default issuer", "POST", `${pkiMount}/config/issuers`, { default: issuers[0] });
    const chain = await vaultRequest<{ data?: { certificate?: string } }>(server, "GET", `${pkiMount}/cert/ca_chain`, undefined, { token: null });
    return chain.body.data?.certificate ?? "";
}
