// The served-certificate check against real TLS listeners on loopback: the
// new leaf served, the old one still served, nothing listening, a listener
// that resets the first connections, and an edge that answers with the app,
// with a 502, with a 404 or with a page of its own; peekServed on an expired
// leaf and a wrong name.
import * as http from "http";
import * as https from "https";
import * as net from "net";
import * as tls from "tls";
import { parseCertificate } from "../../../providers/pem";
import { checkServed, handshake, peekServed } from "../../../providers/servedCert";
import { unusedLoopbackPort } from "../../support/httpsServer";
import { TestPki, type TestCert } from "../../support/tls";

let pki: TestPki;
const certs: Record<string, TestCert> = {};
let chain: string;
const servers: net.Server[] = [];
const FAST = { attempts: 5, firstDelayMs: 50, timeoutMs: 2000 };

beforeAll(() => {
    pki = TestPki.create();
    const root = pki.rootCa("Serve Root CA");
    certs.intermediate = pki.issue({ issuer: root, commonName: "Serve Intermediate CA", isCA: true, days: 30 });
    chain = `${certs.intermediate.certPem}${root.certPem}`;
    certs.newLeaf = pki.issue({ issuer: certs.intermediate, commonName: "app-a.internal", dnsNames: ["app-a.internal"], days: 10 });
    certs.oldLeaf = pki.issue({ issuer: certs.intermediate, commonName: "app-a.internal", dnsNames: ["app-a.internal"], days: 10 });
    certs.edge = pki.issue({ issuer: certs.intermediate, commonName: "edge.internal", dnsNames: ["edge.internal"], days: 10 });
});

afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    pki.cleanup();
});

const APP_PAGE = "app-a\n";

/** An HTTPS listener serving `leaf` (+ the intermediate) and APP_PAGE, which destroys the first `resets` connections. */
async function tlsListener(leaf: TestCert, resets = 0): Promise<{ endpoint: string; connections: () => number }> {
    let connections = 0;
    const server = https.createServer({ cert: `${leaf.certPem}${certs.intermediate.certPem}`, key: leaf.keyPem }, (_req: http.IncomingMessage, res: http.ServerResponse) => res.end(APP_PAGE));
    server.on("connection", (socket: net.Socket) => {
        connections++;
        if (connections <= resets) socket.resetAndDestroy();
    });
    const port = await unusedLoopbackPort();
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
    servers.push(server);
    return { endpoint: `127.0.0.1:${port}`, connections: () => connections };
}

/** An edge stand-in: HTTPS with its own cert, answering `status` and `body` for the app's Host (404 otherwise). */
async function edgeListener(status: number, body = APP_PAGE): Promise<string> {
    const server = https.createServer({ cert: `${certs.edge.certPem}${certs.intermediate.certPem}`, key: certs.edge.keyPem }, (req: http.IncomingMessage, res: http.ServerResponse) => {
        res.statusCode = req.headers.host === "app-a.internal" ? status : 404;
        res.end(body);
    });
    const port = await unusedLoopbackPort();
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
    servers.push(server);
    return `127.0.0.1:${port}`;
}

const serialOf = (c: TestCert) => parseCertificate(c.certPem).serial;
const expect_ = (endpoint: string, extra: object = {}) => ({ app: "app-a", endpoint, commonName: "app-a.internal", expectedSerial: serialOf(certs.newLeaf), caPem: chain, ...extra });

it("passes when the endpoint serves the new leaf over a verified session, directly and through the edge", async () => {
    const app = await tlsListener(certs.newLeaf);
    const edge = await edgeListener(200);
    const r = await checkServed(expect_(app.endpoint, { edge: { listen: edge, serverName: "edge.internal", host: "app-a.internal" } }), FAST);
    expect(r.problems).toEqual([]);
    expect(r.servedSerial).toBe(serialOf(certs.newLeaf));
    expect(r.servedVia).toBe(`direct ${app.endpoint}; edge ${edge} (Host app-a.internal): HTTP 200, the app's own answer`);
});

it("fails, naming the endpoint, when the app keeps serving the old certificate", async () => {
    const app = await tlsListener(certs.oldLeaf);
    const r = await checkServed(expect_(app.endpoint), FAST);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toContain(`app-a: served certificate at ${app.endpoint}: expected serial ${serialOf(certs.newLeaf)}`);
    expect(r.problems[0]).toContain(`the served serial is ${serialOf(certs.oldLeaf)}, not the new leaf's`);
    expect(r.problems[0]).toContain("after 5 attempt(s)");
    expect(app.connections()).toBe(5);
});

it("fails, naming the endpoint, when nothing listens there", async () => {
    const port = await unusedLoopbackPort();
    const r = await checkServed(expect_(`127.0.0.1:${port}`), FAST);
    expect(r.problems[0]).toMatch(new RegExp(`^app-a: served certificate at 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.* after 5 attempt\\(s\\); look at the app's TLS listener`));
});

it("retries through connection resets while a reload settles, then passes", async () => {
    const app = await tlsListener(certs.newLeaf, 3);
    const r = await checkServed(expect_(app.endpoint), FAST);
    expect(r.problems).toEqual([]);
    expect(app.connections()).toBe(4);
});

it("says 'connection reset by peer' when resets outlast the retries", async () => {
    const app = await tlsListener(certs.newLeaf, 100);
    const r = await checkServed(expect_(app.endpoint), FAST);
    expect(r.problems[0]).toContain("connection reset by peer");
});

it("fails on a chain that does not verify against the PKI's issuing chain, without retrying", async () => {
    const foreignRoot = pki.rootCa("Foreign Root");
    const foreign = pki.issue({ issuer: foreignRoot, commonName: "app-a.internal", dnsNames: ["app-a.internal"], days: 5 });
    const server = tls.createServer({ cert: foreign.certPem, key: foreign.keyPem }, (s) => s.end());
    const port = await unusedLoopbackPort();
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
    servers.push(server);
    const r = await checkServed(expect_(`127.0.0.1:${port}`), FAST);
    expect(r.problems[0]).toContain("the served chain does not verify against the PKI's issuing chain");
});

it("fails, naming the edge, when the proxy cannot reach the app over verified upstream TLS (502)", async () => {
    const app = await tlsListener(certs.newLeaf);
    const edge = await edgeListener(502);
    const r = await checkServed(expect_(app.endpoint, { edge: { listen: edge, serverName: "edge.internal", host: "app-a.internal" } }), FAST);
    expect(r.servedSerial).toBe(serialOf(certs.newLeaf));
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toContain(`app-a: through the edge proxy ${edge} (Host app-a.internal, GET /): expected the app's own answer over upstream TLS verified against the proxy's bundle, found HTTP 502 from the edge proxy after 5 attempt(s)`);
});

it("fails, naming the edge, when the edge answers 404 (it never reached the app), without retrying", async () => {
    const app = await tlsListener(certs.newLeaf);
    const edge = await edgeListener(404);
    const r = await checkServed(expect_(app.endpoint, { edge: { listen: edge, serverName: "edge.internal", host: "app-a.internal" } }), FAST);
    expect(r.problems).toEqual([
        expect.stringContaining(`app-a: through the edge proxy ${edge} (Host app-a.internal, GET /): expected the app's own answer over upstream TLS verified against the proxy's bundle, found HTTP 404 from the edge proxy, not a 2xx: it did not answer with the app after 1 attempt(s)`),
    ]);
});

it("fails, naming the edge, when the edge answers 200 with a page of its own", async () => {
    const app = await tlsListener(certs.newLeaf);
    const edge = await edgeListener(200, "edge maintenance page\n");
    const r = await checkServed(expect_(app.endpoint, { edge: { listen: edge, serverName: "edge.internal", host: "app-a.internal" } }), FAST);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatch(/through the edge proxy .*: expected the app's own answer .*found HTTP 200 with 22 bytes \(sha256 [0-9a-f]{12}\) that are not the app's own answer \(6 bytes, sha256 [0-9a-f]{12}\): the edge did not answer with this app after 1 attempt/);
});

it("peekServed reports an expired leaf and a wrong name with their serial and dates; handshake refuses both", async () => {
    const notAfter = new Date(Date.now() - 3600_000);
    const expired = pki.issue({ issuer: certs.intermediate, commonName: "app-a.internal", dnsNames: ["app-a.internal"], notBefore: new Date(Date.now() - 86400_000), notAfter });
    const app = await tlsListener(expired);
    const peeked = await peekServed(app.endpoint, "app-a.internal", chain, 2000);
    expect(peeked.serial).toBe(serialOf(expired));
    expect(peeked.notAfter).toBe(new Date(Math.floor(notAfter.getTime() / 1000) * 1000).toISOString());
    expect(peeked.chainProblem).toBe("CERT_HAS_EXPIRED");
    expect(peeked.nameProblem).toBe("");
    await expect(handshake(app.endpoint, "app-a.internal", chain, 2000)).rejects.toThrow("the served chain does not verify against the PKI's issuing chain (CERT_HAS_EXPIRED)");

    const good = await tlsListener(certs.newLeaf);
    const otherName = await peekServed(good.endpoint, "app-b.internal", chain, 2000);
    expect(otherName.serial).toBe(serialOf(certs.newLeaf));
    expect(otherName.chainProblem).toBe("");
    expect(otherName.nameProblem).toContain("app-b.internal");
    await expect(handshake(good.endpoint, "app-b.internal", chain, 2000)).rejects.toThrow("the served certificate is not valid for app-b.internal");
    await expect(handshake(good.endpoint, "app-a.internal", chain, 2000)).resolves.toEqual({ serial: serialOf(certs.newLeaf), subjectCN: "app-a.internal", dnsNames: ["app-a.internal"] });
});
