// What clients are served (runbook Part 4), against real nginx: each app's nginx
// as its own user, an nginx edge proxy as a user of its own (as root; in
// same-user mode there is no edge: config refuses an edge user shared with an
// app), a real Vault PKI of this file's own (an intermediate rotation must not
// disturb other test files), and the program applied for real.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { rotationCheckProvider, type RotationCheckInputs } from "../../providers/rotationCheck";
import { checkServed } from "../../providers/servedCert";
import { applyProgram, ApplierState, ApplyResult } from "../support/applier";
import { withEpoch } from "../support/harness";
import { renamedLocalStack } from "../support/stacks";
import { runningAsRoot } from "../support/hostUsers";
import { prepareSandbox, Sandbox } from "../support/sandbox";
import { planServing } from "../support/serving";
import { rotateIntermediate, setupProductionLikeVault, testVaultFromEnv } from "../support/vaultAdmin";

const vault = testVaultFromEnv();
const PKI_ROOT = "pki_srv_root";
const PKI = "pki_srv";
const ISSUER = "Serve Intermediate CA";
let sandbox: Sandbox;
let config: Record<string, string>;
let first: ApplyResult;
let state: ApplierState;

type Report = Record<string, Record<string, unknown>>;

async function apply(epoch: string): Promise<ApplyResult> {
    const r = await applyProgram({ config: withEpoch(config, epoch), state, vault, stack: "srv", log: () => undefined });
    state = r.state;
    return r;
}

/** The check's inputs as the last apply recorded them, to run the check again against what is served now. */
function checkInputs(app: string): RotationCheckInputs {
    const entry = Object.values(state.resources).find((e) => e.name === `${app}-check`)!;
    const { __provider: _p, ...inputs } = entry.inputs;
    return inputs as unknown as RotationCheckInputs;
}

async function checkFails(app: string): Promise<string> {
    const err = await rotationCheckProvider.create!(checkInputs(app)).then(
        () => undefined,
        (e: unknown) => e as Error,
    );
    if (!err) throw new Error(`expected the check of ${app} to fail`);
    return err.message;
}

const edgeCalls = () => {
    const log = path.join(sandbox.serving!.edge!.home, ".local/share/podman-shim/calls.log");
    return fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n").length : 0;
};

beforeAll(async () => {
    await setupProductionLikeVault(vault, { pkiRoot: PKI_ROOT, pkiMount: PKI, issuerCommonName: ISSUER });
    const renamed = renamedLocalStack("srv");
    const vaultConfig = { ...JSON.parse(renamed["vault-rotation:vault"]), pkiMount: PKI, issuerCommonName: ISSUER };
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-serving-"));
    const plan = await planServing(vault, PKI, ["srv-a", "srv-b"]);
    sandbox = prepareSandbox({ root, config: { ...renamed, "vault-rotation:vault": JSON.stringify(vaultConfig) }, vault, serve: plan });
    config = sandbox.config;
    first = await apply("srv-1");
}, 300_000);

afterAll(() => {
    sandbox?.close();
    if (sandbox) fs.rmSync(sandbox.root, { recursive: true, force: true });
});

it("serves the new leaf: the check's served serial is the rendered one, directly and through the edge proxy", () => {
    const apps = first.evaluation.exports.apps as Report;
    for (const app of ["srv-a", "srv-b"]) {
        expect(apps[app].servedSerial).toBe(apps[app].leafSerial);
        expect(apps[app].servedVia).toContain(`direct ${sandbox.serving!.endpoints[app]}`);
        if (runningAsRoot()) expect(apps[app].servedVia).toContain(`edge ${sandbox.serving!.edge!.listen} (Host ${app}.internal): HTTP 200`);
    }
});

it("fails, naming the endpoint, when the endpoint is down", async () => {
    const prefix = path.join(sandbox.home("srv-b"), "nginx");
    const pid = Number(fs.readFileSync(path.join(prefix, "nginx.pid"), "utf8"));
    process.kill(pid, "SIGQUIT");
    for (let i = 0; i < 50 && fs.existsSync(path.join(prefix, "nginx.pid")); i++) await new Promise((r) => setTimeout(r, 100));
    const message = await checkFails("srv-b");
    expect(message).toContain(`srv-b: served certificate at ${sandbox.serving!.endpoints["srv-b"]}: expected serial`);
    expect(message).toContain("ECONNREFUSED");
    expect(message).toContain("look at the app's TLS listener");
    // Back up, as its container would be.
    const user = sandbox.user("srv-b").name;
    // Debian puts nginx in /usr/sbin, off an ordinary user's PATH.
    const start = [fs.existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx", "-c", path.join(prefix, "nginx.conf"), "-p", `${prefix}/`, "-e", path.join(prefix, "error.log")];
    const r = runningAsRoot() ? spawnSync("runuser", ["-u", user, "--", ...start]) : spawnSync(start[0], start.slice(1));
    expect(r.status).toBe(0);
}, 60_000);

// The edge proxy runs as a user of its own, which only root can make.
if (runningAsRoot()) {
    it("a no-op run touches neither the edge's bundle nor the proxy", async () => {
        const bundle = sandbox.serving!.edge!.bundle;
        const before = { mtime: fs.statSync(bundle).mtimeMs, calls: edgeCalls() };
        const again = await apply("srv-1");
        expect(again.steps.filter((s) => s.action !== "same").map((s) => s.name)).toEqual([]);
        expect({ mtime: fs.statSync(bundle).mtimeMs, calls: edgeCalls() }).toEqual(before);
    }, 120_000);

    it("fails, naming the edge, when the proxy's bundle lacks the issuing chain", async () => {
        const edge = sandbox.serving!.edge!;
        const good = fs.readFileSync(edge.bundle, "utf8");
        const pid = Number(fs.readFileSync(path.join(edge.home, "nginx", "nginx.pid"), "utf8"));
        try {
            // A bundle that trusts something else (Vault's listener CA), as a stale or wrong proxy config would.
            fs.writeFileSync(edge.bundle, fs.readFileSync(vault.caCertFile, "utf8"));
            process.kill(pid, "SIGHUP");
            await new Promise((r) => setTimeout(r, 500));
            const message = await checkFails("srv-a");
            expect(message).toContain(`srv-a: through the edge proxy ${edge.listen} (Host srv-a.internal, GET /)`);
            expect(message).toContain("HTTP 502 from the edge proxy");
            expect(message).not.toContain("served certificate at");
        } finally {
            fs.writeFileSync(edge.bundle, good);
            process.kill(pid, "SIGHUP");
            await new Promise((r) => setTimeout(r, 500));
        }
    }, 60_000);
    it("an intermediate rotation in Vault rewrites the bundle and reloads the proxy once, and the old leaves still verify through it", async () => {
        const bundle = sandbox.serving!.edge!.bundle;
        const calls = edgeCalls();
        const chain = await rotateIntermediate(vault, PKI_ROOT, PKI, ISSUER);
        expect(fs.readFileSync(bundle, "utf8").trim()).not.toBe(chain.trim());
        const r = await apply("srv-1");
        expect(r.steps.filter((s) => s.action !== "same").map((s) => `${s.action} ${s.name}`).sort()).toEqual(["update edge-issuing-chain", "update edge-trust-bundle"]);
        expect(fs.readFileSync(bundle, "utf8").trim()).toBe(chain.trim());
        expect(edgeCalls()).toBe(calls + 1);
        // Same root: the apps' current leaves (old intermediate, sent in their chain) still verify at the edge
        // and against the new chain, until their next rotation reissues them under the new intermediate.
        const inputs = checkInputs("srv-a");
        const apps = first.evaluation.exports.apps as Report;
        const served = await checkServed({ app: "srv-a", endpoint: inputs.serve!.endpoint, commonName: "srv-a.internal", expectedSerial: String(apps["srv-a"].leafSerial), caPem: chain, edge: inputs.serve!.edge });
        expect(served.problems).toEqual([]);
    }, 120_000);

}

it("fails, naming the endpoint, when the app keeps serving the old certificate (reload suppressed)", async () => {
    // The labelled container no longer stands for the app's nginx: the hook's reload reaches nothing.
    // The rotation itself runs without the served check (no serve.endpoint for srv-a), then the check
    // runs against what is served: the failing check inside an apply is the same call.
    const containers = path.join(sandbox.podmanDir("srv-a"), "containers");
    const original = fs.readFileSync(containers, "utf8");
    fs.writeFileSync(containers, original.replace(/ nginx=\S+/, ""));
    const serve = checkInputs("srv-a").serve;
    const apps = JSON.parse(config["vault-rotation:apps"]) as { name: string; serve?: unknown }[];
    try {
        const rotated = await applyProgram({
            config: { ...withEpoch(config, "srv-2"), "vault-rotation:apps": JSON.stringify(apps.map((a) => (a.name === "srv-a" ? { ...a, serve: undefined } : a))) },
            state,
            vault,
            stack: "srv",
            log: () => undefined,
        });
        const newSerial = String((rotated.evaluation.exports.apps as Report)["srv-a"].leafSerial);
        const entry = Object.values(rotated.state.resources).find((e) => e.name === "srv-a-check")!;
        const { __provider: _p, ...inputs } = entry.inputs;
        const err = await rotationCheckProvider.create!({ ...(inputs as unknown as RotationCheckInputs), serve }).then(
            () => undefined,
            (e: unknown) => e as Error,
        );
        expect(err).toBeDefined();
        expect(err!.message).toContain(`srv-a: served certificate at ${sandbox.serving!.endpoints["srv-a"]}: expected serial ${newSerial}`);
        expect(err!.message).toContain("the app still serves the old certificate");
    } finally {
        fs.writeFileSync(containers, original);
    }
}, 180_000);
