// What clients are actually served (runbook Part 4): a real TLS handshake to an
// app's listener, and a request through the edge proxy, from the Pulumi runner.
//
// Why the runner: the check, the issuing chain it verifies against and the
// failure it raises all live there, and a probe from the runner is what an
// operator would run by hand. A runner that cannot reach an internal listener
// leaves `serve` unset for that app (documented), rather than moving TLS
// probing onto app hosts whose tools this program does not control.
import { createHash } from "crypto";
import * as https from "https";
import * as tls from "tls";
import { normalizeSerial } from "./pem";

/** Transient errors while a reload settles: retried with backoff. */
const TRANSIENT = /ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|socket hang up|disconnected before secure TLS connection|timed out|serial|handshake|HTTP 50[234]/i;

export interface ProbeOptions {
    /** Attempts in all (default 6). */
    attempts?: number;
    /** Delay before the second attempt, doubled each time (default 250 ms): 250+500+...+4000 ms for 6. */
    firstDelayMs?: number;
    /** Per attempt (default 5000 ms). */
    timeoutMs?: number;
}

export interface ServedLeaf {
    serial: string;
    subjectCN: string;
    dnsNames: string[];
}

function splitEndpoint(endpoint: string): { host: string; port: number } {
    const i = endpoint.lastIndexOf(":");
    return { host: endpoint.slice(0, i), port: Number(endpoint.slice(i + 1)) };
}

/** A served leaf with what a client's verification said about it, verified or not. */
export interface PeekedLeaf extends ServedLeaf {
    /** ISO 8601 */
    notBefore: string;
    /** ISO 8601 */
    notAfter: string;
    /** "" when the served chain verifies against the CA given, else OpenSSL's reason (e.g. CERT_HAS_EXPIRED). */
    chainProblem: string;
    /** "" when the leaf is valid for the server name, else why not. */
    nameProblem: string;
}

/**
 * One TLS handshake (SNI `serverName`) that reports the served leaf whatever the
 * verification said: the chain against `caPem` and the name against
 * `serverName` come back as `chainProblem` and `nameProblem`. Rejects only when
 * there is no certificate to look at (refused, reset, timed out).
 */
export function peekServed(endpoint: string, serverName: string, caPem: string, timeoutMs = 5000): Promise<PeekedLeaf> {
    const { host, port } = splitEndpoint(endpoint);
    return new Promise((resolve, reject) => {
        const socket = tls.connect({ host, port, servername: serverName, ca: caPem, rejectUnauthorized: false, timeout: timeoutMs });
        const done = (e?: Error, leaf?: PeekedLeaf) => {
            socket.destroy();
            if (e) reject(e);
            else resolve(leaf!);
        };
        socket.once("timeout", () => done(new Error(`timed out after ${timeoutMs} ms`)));
        socket.once("error", (e) => done(e));
        socket.once("secureConnect", () => {
            const cert = socket.getPeerCertificate();
            if (!cert || !cert.serialNumber) return done(new Error("handshake: the server sent no certificate"));
            const dnsNames = (cert.subjectaltname ?? "")
                .split(",")
                .map((s) => s.trim())
                .filter((s) => s.startsWith("DNS:"))
                .map((s) => s.slice(4));
            done(undefined, {
                serial: normalizeSerial(cert.serialNumber),
                subjectCN: String(cert.subject?.CN ?? ""),
                dnsNames,
                notBefore: new Date(cert.valid_from).toISOString(),
                notAfter: new Date(cert.valid_to).toISOString(),
                // Node checks the name only once the chain verified, and then reports a wrong
                // name as the authorization error: that is the name's problem, not the chain's.
                chainProblem: socket.authorized || String(socket.authorizationError) === "ERR_TLS_CERT_ALTNAME_INVALID" ? "" : String(socket.authorizationError),
                nameProblem: tls.checkServerIdentity(serverName, cert)?.message ?? "",
            });
        });
    });
}

/**
 * One handshake: SNI `serverName`, the chain verified against `caPem` and the
 * name against `serverName`. Resolves with the served leaf, rejects with the
 * reason (connection reset, unknown CA, wrong name, ...).
 */
export async function handshake(endpoint: string, serverName: string, caPem: string, timeoutMs = 5000): Promise<ServedLeaf> {
    const leaf = await peekServed(endpoint, serverName, caPem, timeoutMs);
    if (leaf.chainProblem) throw new Error(`handshake: the served chain does not verify against the PKI's issuing chain (${leaf.chainProblem})`);
    if (leaf.nameProblem) throw new Error(`handshake: the served certificate is not valid for ${serverName} (${leaf.nameProblem})`);
    return { serial: leaf.serial, subjectCN: leaf.subjectCN, dnsNames: leaf.dnsNames };
}

/** An HTTP answer, as much of it as the check compares: status, size and digest of the body. */
export interface HttpAnswer {
    status: number;
    bytes: number;
    sha256: string;
}

/** At most this much of a body is read: a check page, not a download. */
const MAX_BODY = 1024 * 1024;

/**
 * One HTTPS `GET path` to `endpoint` (SNI and name `serverName`, verified
 * against `caPem`) with `Host: host`. Through the edge proxy, the proxy answers
 * 502 when its upstream TLS to the app fails (unknown CA in its bundle, wrong
 * name, app down).
 */
export function httpsGet(endpoint: string, serverName: string, host: string, caPem: string, path = "/", timeoutMs = 5000): Promise<HttpAnswer> {
    const { host: address, port } = splitEndpoint(endpoint);
    return new Promise((resolve, reject) => {
        const req = https.request(
            { host: address, port, method: "GET", path, servername: serverName, ca: caPem, headers: { Host: host }, timeout: timeoutMs, agent: false },
            (res) => {
                const hash = createHash("sha256");
                let bytes = 0;
                res.on("data", (chunk: Buffer) => {
                    bytes += chunk.length;
                    if (bytes > MAX_BODY) req.destroy(new Error(`the answer to GET ${path} is larger than ${MAX_BODY} bytes`));
                    else hash.update(chunk);
                });
                res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes, sha256: hash.digest("hex") }));
            },
        );
        req.once("timeout", () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
        req.once("error", reject);
        req.end();
    });
}

/**
 * Retries `attempt` with bounded backoff while it fails with a transient error
 * (reset, refused, handshake, an old serial still served, 502-504 through the
 * proxy); anything else fails at once. Returns the value, or the last error.
 */
export async function withRetries<T>(attempt: () => Promise<T>, opts: ProbeOptions = {}): Promise<{ value: T; tries: number } | { error: string; tries: number }> {
    const attempts = opts.attempts ?? 6;
    let delay = opts.firstDelayMs ?? 250;
    let last = "";
    for (let i = 1; i <= attempts; i++) {
        try {
            return { value: await attempt(), tries: i };
        } catch (e) {
            last = e instanceof Error ? e.message || String((e as NodeJS.ErrnoException).code) : String(e);
            const code = (e as NodeJS.ErrnoException).code;
            if (code === "ECONNRESET") last = `connection reset by peer (${last})`;
            if (!TRANSIENT.test(`${code ?? ""} ${last}`) || i === attempts) return { error: last, tries: i };
            await new Promise((r) => setTimeout(r, delay));
            delay *= 2;
        }
    }
    return { error: last, tries: attempts };
}

export interface ServeExpectation {
    app: string;
    /** `host:port` of the app's TLS listener. */
    endpoint: string;
    /** SNI and expected name: the leaf's CN. */
    commonName: string;
    /** The serial the rotation just rendered. */
    expectedSerial: string;
    /** The PKI's issuing chain (PEM) the served chain must verify against. */
    caPem: string;
    /** The path both requests ask for (default `/`): one whose answer is the same bytes on every request. */
    path?: string;
    edge?: { listen: string; serverName: string; host: string };
}

export interface ServeResult {
    /** The serial served at the endpoint ("" on failure). */
    servedSerial: string;
    /** How it was checked, e.g. `direct 127.0.0.1:8441; edge 127.0.0.1:8443 (Host app-a.internal): HTTP 200`. */
    servedVia: string;
    /** Failure lines (empty when everything passed). */
    problems: string[];
}

/**
 * The served-certificate items: the endpoint serves the new leaf (serial,
 * chain, names), and a client through the edge proxy gets an answer from the
 * app (the proxy verified the app's new leaf against its bundle). The edge
 * terminates client TLS with its own certificate, so the app's serial can only
 * be seen at the endpoint itself.
 */
export async function checkServed(e: ServeExpectation, opts: ProbeOptions = {}): Promise<ServeResult> {
    const problems: string[] = [];
    const expected = normalizeSerial(e.expectedSerial);
    const direct = await withRetries(async () => {
        const leaf = await handshake(e.endpoint, e.commonName, e.caPem, opts.timeoutMs);
        if (leaf.serial !== expected) throw new Error(`the served serial is ${leaf.serial}, not the new leaf's ${expected} (the app still serves the old certificate)`);
        return leaf;
    }, opts);
    let servedSerial = "";
    const via = [`direct ${e.endpoint}`];
    if ("error" in direct) {
        problems.push(
            `${e.app}: served certificate at ${e.endpoint}: expected serial ${expected} over a verified TLS session (SNI ${e.commonName}), found ${direct.error} after ${direct.tries} attempt(s); look at the app's TLS listener (is it up, did the post-hook's reload reach it?) and its logs`,
        );
    } else {
        servedSerial = direct.value.serial;
    }
    if (e.edge && !("error" in direct)) {
        const edge = e.edge;
        const path = e.path ?? "/";
        // Proof that the edge's answer comes from the app: a 2xx, byte for byte the
        // app's own answer to the same request made directly (an edge that never
        // reaches the app, with a page or a 404 of its own, does not pass).
        const own = await withRetries(async () => {
            const answer = await httpsGet(e.endpoint, e.commonName, edge.host, e.caPem, path, opts.timeoutMs);
            if (answer.status < 200 || answer.status > 299) throw new Error(`HTTP ${answer.status} from the app itself`);
            return answer;
        }, opts);
        const through =
            "error" in own
                ? own
                : await withRetries(async () => {
                      const answer = await httpsGet(edge.listen, edge.serverName, edge.host, e.caPem, path, opts.timeoutMs);
                      if (answer.status >= 500) throw new Error(`HTTP ${answer.status} from the edge proxy`);
                      if (answer.status < 200 || answer.status > 299) throw new Error(`HTTP ${answer.status} from the edge proxy, not a 2xx: it did not answer with the app`);
                      if (answer.sha256 !== own.value.sha256) {
                          throw new Error(
                              `HTTP ${answer.status} with ${answer.bytes} bytes (sha256 ${answer.sha256.slice(0, 12)}) that are not the app's own answer (${own.value.bytes} bytes, sha256 ${own.value.sha256.slice(0, 12)}): the edge did not answer with this app`,
                          );
                      }
                      return answer;
                  }, opts);
        if ("error" in through) {
            problems.push(
                `${e.app}: through the edge proxy ${edge.listen} (Host ${edge.host}, GET ${path}): expected the app's own answer over upstream TLS verified against the proxy's bundle, found ${through.error} after ${through.tries} attempt(s); look at the proxy's routing for ${edge.host}, its error log (upstream SSL certificate verify error: its bundle lacks the issuing chain) and its trust bundle`,
            );
        } else {
            via.push(`edge ${edge.listen} (Host ${edge.host}): HTTP ${through.value.status}, the app's own answer`);
        }
    }
    return { servedSerial, servedVia: via.join("; "), problems };
}
