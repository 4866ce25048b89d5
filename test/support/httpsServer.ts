// A scripted HTTPS server on 127.0.0.1 that stands in for Vault in unit tests:
// it records every request and answers from a handler, and can reset or stall
// a connection to exercise the client's retries and timeouts.
import type { IncomingHttpHeaders } from "http";
import * as https from "https";
import * as net from "net";
import type { TLSSocket } from "tls";
import { makeListenerTls, type TestCert, type TestPki } from "./tls";

export interface RecordedRequest {
    method: string;
    /** Path after `/v1/`, without the query string. */
    path: string;
    query: Record<string, string>;
    headers: IncomingHttpHeaders;
    /** Parsed JSON body, or undefined when there was none. */
    body: unknown;
    /** CN of the client certificate, when one was presented. */
    clientCertCN?: string;
    /** Whether the client certificate verified against `clientCaPem`. */
    clientCertAuthorized: boolean;
}

export type Reply =
    | { status?: number; json?: unknown; text?: string; headers?: Record<string, string> }
    /** Drop the connection without answering (the client sees a reset / hang up). */
    | { destroy: true }
    /** Never answer (the client times out). */
    | { hang: true };

export type Handler = (req: RecordedRequest, index: number) => Reply | Promise<Reply>;

export interface TestHttpsServer {
    /** `https://127.0.0.1:<port>` */
    address: string;
    port: number;
    requests: RecordedRequest[];
    setHandler(handler: Handler): void;
    close(): Promise<void>;
}

export interface HttpsServerOptions {
    keyPem: string;
    certPem: string;
    /** CA that client certificates are verified against (mTLS logins). */
    clientCaPem?: string;
    handler?: Handler;
}

export async function startHttpsServer(options: HttpsServerOptions): Promise<TestHttpsServer> {
    let handler: Handler = options.handler ?? (() => ({ status: 404, json: { errors: [] } }));
    const requests: RecordedRequest[] = [];
    const server = https.createServer(
        {
            key: options.keyPem,
            cert: options.certPem,
            ca: options.clientCaPem,
            requestCert: options.clientCaPem !== undefined,
            // Like Vault's listener: ask for a client cert but let the (cert auth) handler
            // decide, so calls without one still reach it. This is the test server; the
            // client under test always verifies the server.
            rejectUnauthorized: false,
        },
        (req, res) => {
            const chunks: Buffer[] = [];
            req.on("data", (c: Buffer) => chunks.push(c));
            req.on("end", () => {
                void (async () => {
                    const url = new URL(req.url ?? "/", "https://127.0.0.1");
                    const socket = req.socket as TLSSocket;
                    const peer = socket.getPeerCertificate();
                    const text = Buffer.concat(chunks).toString("utf8");
                    const recorded: RecordedRequest = {
                        method: req.method ?? "",
                        path: decodeURIComponent(url.pathname.replace(/^\/v1\//, "")),
                        query: Object.fromEntries(url.searchParams.entries()),
                        headers: req.headers,
                        body: text === "" ? undefined : (JSON.parse(text) as unknown),
                        clientCertCN: peer && Object.keys(peer).length > 0 ? String(peer.subject?.CN ?? "") : undefined,
                        clientCertAuthorized: socket.authorized,
                    };
                    requests.push(recorded);
                    const reply = await handler(recorded, requests.length - 1);
                    if ("destroy" in reply) {
                        req.socket.destroy();
                        return;
                    }
                    if ("hang" in reply) return;
                    const payload = reply.text ?? (reply.json === undefined ? "" : JSON.stringify(reply.json));
                    res.writeHead(reply.status ?? 200, {
                        "Content-Type": reply.text !== undefined ? "text/plain" : "application/json",
                        ...reply.headers,
                    });
                    res.end(payload);
                })();
            });
        },
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    return {
        address: `https://127.0.0.1:${port}`,
        port,
        requests,
        setHandler(next) {
            handler = next;
        },
        close() {
            server.closeAllConnections();
            return new Promise<void>((resolve) => server.close(() => resolve()));
        },
    };
}

/** Answers by `"<METHOD> <path>"`; anything else gets Vault's 404 with an empty `errors`. */
export function routes(table: Record<string, Reply | Handler>): Handler {
    return (req, index) => {
        const entry = table[`${req.method} ${req.path}`];
        if (entry === undefined) return { status: 404, json: { errors: [] } };
        return typeof entry === "function" ? entry(req, index) : entry;
    };
}

/** A loopback port with nothing listening on it (for connection-refused tests). */
export async function unusedLoopbackPort(): Promise<number> {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    return port;
}

/**
 * A stand-in Vault listener with its own CA from `pki`, and the provider
 * connection that trusts it (the CA as a file, as on the Pulumi runner).
 */
export async function startFakeVault(
    pki: TestPki,
    options: { clientCaPem?: string; handler?: Handler } = {},
): Promise<{ server: TestHttpsServer; connection: { address: string; caCertFile: string }; listenerCa: TestCert }> {
    const listener = makeListenerTls(pki);
    const server = await startHttpsServer({ keyPem: listener.server.keyPem, certPem: listener.server.certPem, ...options });
    return { server, connection: { address: server.address, caCertFile: listener.caFile }, listenerCa: listener.ca };
}
