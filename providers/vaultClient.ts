// A small Vault HTTP client for the dynamic providers, on Node's `https` only.
//
// This module keeps no state: a client (with its token) lives only as long as
// the call that created it.
import * as fs from "fs";
import type { IncomingHttpHeaders } from "http";
import * as https from "https";
import type { VaultConnection } from "./connection";
import { findVaultToken } from "./connection";

export interface VaultClientOptions {
    /** `https://host[:port]`; plain http is refused. */
    address: string;
    /** PEM bundle (path on the Pulumi runner) that verifies Vault's listener. */
    caCertFile?: string;
    /** The same as a PEM string; added to `caCertFile` when both are given. */
    caCertPem?: string;
    /** Sent as `X-Vault-Token` unless a request says `noToken`; a function is called once, on first use. */
    token?: string | (() => Promise<string>);
    /** Client certificate and key for mTLS (cert auth logins). */
    clientCertPem?: string;
    clientKeyPem?: string;
    /** Vault Enterprise namespace, sent as `X-Vault-Namespace`. */
    namespace?: string;
    /** Retries after the first attempt (default 4). */
    maxRetries?: number;
    /** First backoff delay; doubles on each retry (default 200 ms). */
    retryBaseMs?: number;
    /** Socket inactivity timeout per attempt (default 15000 ms). */
    timeoutMs?: number;
}

export interface VaultRequestOptions {
    query?: Record<string, string>;
    /** Do not send the token (unauthenticated endpoints, cert logins). */
    noToken?: boolean;
    /** Non-2xx statuses that are answers, not errors (e.g. 404 on a read, 429 from sys/health). */
    acceptStatus?: readonly number[];
}

export interface VaultResponse {
    status: number;
    /** Parsed JSON, the raw text when the answer is not JSON, undefined when empty. */
    body: unknown;
}

export interface VaultClient {
    request(method: string, path: string, body?: unknown, options?: VaultRequestOptions): Promise<VaultResponse>;
    /** GET; undefined on 404. */
    read(path: string): Promise<Record<string, unknown> | undefined>;
    /** POST (Vault treats PUT and POST alike); the parsed answer, `{}` when empty. */
    write(path: string, body: unknown): Promise<Record<string, unknown>>;
    /** `data.keys` of a LIST (sent as `GET ?list=true`); empty on 404. */
    list(path: string): Promise<string[]>;
    /** DELETE; a 404 counts as already deleted. */
    delete(path: string): Promise<void>;
}

/** Vault answered with a non-2xx status. Carries no token and no request body. */
export class VaultHttpError extends Error {
    constructor(
        public readonly method: string,
        public readonly path: string,
        public readonly status: number,
        public readonly errors: string[],
    ) {
        super(`Vault ${method} ${path}: ${status}: ${errors.length > 0 ? errors.join("; ") : "(no error message in the answer)"}`);
        this.name = "VaultHttpError";
    }
}

/** No HTTP answer at all: TLS failure, refused or reset connection, timeout. */
export class VaultNetworkError extends Error {
    constructor(
        public readonly method: string,
        public readonly path: string,
        public readonly code: string,
        public readonly attempts: number,
        detail: string,
    ) {
        super(`Vault ${method} ${path}: no answer after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${code}: ${detail}`);
        this.name = "VaultNetworkError";
    }
}

/** Network errors worth another attempt; TLS verification failures are not among them. */
const RETRYABLE_CODES = ["ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "EPIPE", "ESOCKETTIMEDOUT"];
const MAX_BACKOFF_MS = 10_000;

export function createVaultClient(options: VaultClientOptions): VaultClient {

    const url = new URL(options.address);
    if (url.protocol !== "https:") {
        throw new Error(`Vault address must be https:// (got ${url.protocol}//${url.host})`);
    }
    const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = url.port === "" ? 443 : Number(url.port);
    const maxRetries = options.maxRetries ?? 4;
    const retryBaseMs = options.retryBaseMs ?? 200;
    const timeoutMs = options.timeoutMs ?? 15_000;

    const caBundles: string[] = [];
    if (options.caCertFile) {
        try {
            caBundles.push(fs.readFileSync(options.caCertFile, "utf8"));
        } catch (e) {
            throw new Error(`cannot read the Vault CA bundle ${options.caCertFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
        }
    }
    if (options.caCertPem) caBundles.push(options.caCertPem);

    let token: string | undefined = typeof options.token === "string" ? options.token : undefined;
    const tokenSource = typeof options.token === "function" ? options.token : undefined;
    async function currentToken(): Promise<string | undefined> {
        if (token === undefined && tokenSource) token = await tokenSource();
        return token;
    }

    // Vault may echo parts of a request in its errors; the token never leaves this client.
    const scrub = (text: string): string => (token && token.length >= 4 ? text.split(token).join("[redacted]") : text);

    interface RawAnswer {
        status: number;
        text: string;
        headers: IncomingHttpHeaders;
    }

    function attempt(method: string, requestPath: string, payload: string | undefined, headers: Record<string, string>): Promise<RawAnswer> {
        return new Promise((resolve, reject) => {
            const req = https.request(
                {
                    hostname,
                    port,
                    method,
                    path: requestPath,
                    headers,
                    // Verified against the given CA, or Node's default roots when none is given.
                    ca: caBundles.length > 0 ? caBundles : undefined,
                    cert: options.clientCertPem,
                    key: options.clientKeyPem,
                    // A fresh connection per attempt: a reset pooled socket must not poison the retry.
                    agent: false,
                },
                (res) => {
                    const chunks: Buffer[] = [];
                    res.on("data", (chunk: Buffer) => chunks.push(chunk));
                    res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8"), headers: res.headers }));
                    res.on("error", reject);
                },
            );
            req.setTimeout(timeoutMs, () => {
                req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" }));
            });
            req.on("error", reject);
            req.end(payload);
        });
    }

    function parseBody(text: string): unknown {
        if (text.trim() === "") return undefined;
        try {
            return JSON.parse(text) as unknown;
        } catch {
            return text;
        }
    }

    function errorsOf(body: unknown): string[] {
        const errors = asRecord(body).errors;
        return Array.isArray(errors) ? errors.map((e) => scrub(String(e))) : [];
    }

    function delayFor(retry: number, retryAfter: string | string[] | undefined): number {
        const backoff = Math.min(retryBaseMs * 2 ** retry, MAX_BACKOFF_MS);
        const seconds = Number(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
        return Number.isFinite(seconds) && seconds > 0 ? Math.max(backoff, Math.min(seconds * 1000, MAX_BACKOFF_MS)) : backoff;
    }

    const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

    async function request(method: string, path: string, body?: unknown, requestOptions: VaultRequestOptions = {}): Promise<VaultResponse> {
        const cleanPath = path.replace(/^\/+/, "");
        const encodedPath = cleanPath.split("/").map(encodeURIComponent).join("/");
        const query = requestOptions.query ? `?${new URLSearchParams(requestOptions.query).toString()}` : "";
        const headers: Record<string, string> = { Accept: "application/json", "X-Vault-Request": "true" };
        if (!requestOptions.noToken) {
            const current = await currentToken();
            if (!current) throw new Error(`Vault ${method} ${cleanPath}: no token given to the client`);
            headers["X-Vault-Token"] = current;
        }
        if (options.namespace) headers["X-Vault-Namespace"] = options.namespace;
        let payload: string | undefined;
        if (body !== undefined) {
            payload = JSON.stringify(body);
            headers["Content-Type"] = "application/json";
            headers["Content-Length"] = String(Buffer.byteLength(payload));
        }
        const accepted = requestOptions.acceptStatus ?? [];

        for (let tries = 1; ; tries++) {
            let answer: RawAnswer;
            try {
                answer = await attempt(method, `/v1/${encodedPath}${query}`, payload, headers);
            } catch (e) {
                const err = e as NodeJS.ErrnoException;
                const code = err.code ?? "ERROR";
                const retryable = RETRYABLE_CODES.includes(code) || /socket hang up/i.test(err.message);
                if (retryable && tries <= maxRetries) {
                    await sleep(delayFor(tries - 1, undefined));
                    continue;
                }
                throw new VaultNetworkError(method, cleanPath, code, tries, scrub(err.message));
            }
            const parsed = parseBody(answer.text);
            if ((answer.status >= 200 && answer.status < 300) || accepted.includes(answer.status)) {
                return { status: answer.status, body: parsed };
            }
            // 5xx means Vault (or a proxy) could not serve it now, 429 is rate limiting;
            // 501 (not initialised / not implemented) will not get better by waiting.
            const retryable = (answer.status >= 500 && answer.status !== 501) || answer.status === 429;
            if (retryable && tries <= maxRetries) {
                await sleep(delayFor(tries - 1, answer.headers["retry-after"]));
                continue;
            }
            throw new VaultHttpError(method, cleanPath, answer.status, errorsOf(parsed));
        }
    }

    return {
        request,
        async read(path) {
            const res = await request("GET", path, undefined, { acceptStatus: [404] });
            return res.status === 404 ? undefined : asRecord(res.body);
        },
        async write(path, body) {
            const res = await request("POST", path, body);
            return asRecord(res.body);
        },
        async list(path) {
            const res = await request("GET", path, undefined, { query: { list: "true" }, acceptStatus: [404] });
            if (res.status === 404) return [];
            const keys = asRecord(asRecord(res.body).data).keys;
            return Array.isArray(keys) ? keys.map(String) : [];
        },
        async delete(path) {
            await request("DELETE", path, undefined, { acceptStatus: [404] });
        },
    };
}

/** VAULT_CACERT, as the vault provider plugin reads it, for a connection that names no CA file. */
function listenerCaFromEnvironment(): string | undefined {
    const file = process.env.VAULT_CACERT;
    return file && file.trim() !== "" ? file.trim() : undefined;
}

/**
 * The listener CA file for a connection: the one it names, else VAULT_CACERT.
 * Also VAULT_CACERT when the named file is gone and the variable is set: a
 * resource recorded before the stack moved to ESC names a runner path that a
 * Deployment does not have, and its delete (a revocation) must still reach Vault.
 */
function caFileFor(connection: VaultConnection): string | undefined {
    const fromEnvironment = listenerCaFromEnvironment();
    if (connection.caCertFile === undefined) return fromEnvironment;
    if (fromEnvironment !== undefined && !fs.existsSync(connection.caCertFile)) return fromEnvironment;
    return connection.caCertFile;
}

/**
 * A client for a provider's connection, with the token resolved now (never an
 * input, never stored). `withToken: false` for unauthenticated endpoints.
 */
export function clientForConnection(
    connection: VaultConnection,
    extra: Partial<Omit<VaultClientOptions, "address" | "caCertFile" | "namespace">> & { withToken?: boolean } = {},
): VaultClient {
    const { withToken = true, ...rest } = extra;
    return createVaultClient({
        ...rest,
        address: connection.address,
        caCertFile: caFileFor(connection),
        namespace: connection.namespace,
        token: withToken ? () => tokenForConnection() : rest.token,
    });
}

/**
 * The token for a provider call: VAULT_TOKEN, else ~/.vault-token. Exactly one
 * Vault identity per run: the vault provider plugin resolves the same way.
 * Resolved when the first request needs it; never stored.
 */
export async function tokenForConnection(): Promise<string> {
    const direct = findVaultToken();
    if (direct !== undefined) return direct;
    throw new Error(
        "no Vault token: set VAULT_TOKEN for the Pulumi process (or run `vault login` so ~/.vault-token exists); a Pulumi Deployment gets it from the stack's ESC environment (deploy/README.md)",
    );
}

/** The value as a plain object, or `{}`: Vault's JSON is untyped, callers narrow field by field. */
export function asRecord(value: unknown): Record<string, unknown> {
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** The value when it is a string, else undefined. */
export function asString(value: unknown): string | undefined {
    return typeof value === "string" ? value : undefined;
}

// ---- input checks shared by the providers -------------------------------------------------

/**
 * The value Pulumi passes for an input that is not known yet (during preview).
 * Checks skip such inputs; a diff treats them as changed.
 */
export const UNKNOWN_INPUT = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export function isUnknownInput(value: unknown): boolean {
    return value === UNKNOWN_INPUT;
}

/** A Vault mount or auth path: `segment(/segment)*` of letters, digits, `_` and `-`. */
export function mountPathProblem(value: unknown): string | undefined {
    if (typeof value !== "string") return "must be a string";
    if (!/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(value)) {
        return `must match [A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)* without leading or trailing '/' (got ${JSON.stringify(value)})`;
    }
    return undefined;
}

/** Problems with a connection input, as `[property, reason]` pairs under `connection`. */
export function connectionProblems(connection: unknown): { property: string; reason: string }[] {
    if (isUnknownInput(connection)) return [];
    if (typeof connection !== "object" || connection === null || Array.isArray(connection)) {
        return [{ property: "connection", reason: "must be an object { address, caCertFile?, namespace? }" }];
    }
    const c = connection as Record<string, unknown>;
    const problems: { property: string; reason: string }[] = [];
    if (!isUnknownInput(c.address) && (typeof c.address !== "string" || !/^https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?\/?$/.test(c.address))) {
        problems.push({ property: "connection.address", reason: `must be https://host[:port] (got ${JSON.stringify(c.address)})` });
    }
    if (c.caCertFile !== undefined && !isUnknownInput(c.caCertFile) && (typeof c.caCertFile !== "string" || !c.caCertFile.startsWith("/"))) {
        problems.push({ property: "connection.caCertFile", reason: "must be an absolute path" });
    }
    if (
        c.namespace !== undefined &&
        !isUnknownInput(c.namespace) &&
        (typeof c.namespace !== "string" || !/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*\/?$/.test(c.namespace))
    ) {
        problems.push({ property: "connection.namespace", reason: "must be a Vault namespace path such as team/prod" });
    }
    return problems;
}

/** Structural equality for JSON-like inputs (objects compared key by key, undefined keys ignored). */
export function sameJson(a: unknown, b: unknown): boolean {
    if (a === b) return true;
    if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
    if (Array.isArray(a) !== Array.isArray(b)) return false;
    if (Array.isArray(a) && Array.isArray(b)) {
        return a.length === b.length && a.every((v, i) => sameJson(v, b[i]));
    }
    const ra = a as Record<string, unknown>;
    const rb = b as Record<string, unknown>;
    const keys = new Set([...Object.keys(ra), ...Object.keys(rb)].filter((k) => ra[k] !== undefined || rb[k] !== undefined));
    return [...keys].every((k) => sameJson(ra[k], rb[k]));
}

/** The input keys whose values differ between the stored state and the new inputs. */
export function changedKeys<T extends object>(olds: Partial<T>, news: Partial<T>, keys: readonly (keyof T & string)[]): (keyof T & string)[] {
    return keys.filter((k) => !sameJson(olds[k], news[k]));
}
