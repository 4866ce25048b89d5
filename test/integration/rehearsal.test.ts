// `npm run rehearse`, run in-process: the report must show a complete rotation.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { rehearse, RehearsalReport } from "../../scripts/lib/rehearsal";
import { loadStackConfig, REPO_ROOT } from "../support/harness";
import { runningAsRoot } from "../support/hostUsers";
import { openSandbox, prepareSandbox } from "../support/sandbox";
import { TEST_HOST_KEY, writeThreeAppRehearsalStack } from "../support/stacks";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-rehearsal-it-"));
// mkdtemp makes it 0700: as root, the sandboxes' app users must pass through it
// to their homes (or the sandbox would put the homes elsewhere).
fs.chmodSync(tmp, 0o755);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function expectCompleteRotation(report: RehearsalReport, apps: string[]): void {
    expect(report.failures).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.apps.map((a) => a.app)).toEqual(apps);
    for (const a of report.apps) {
        expect(a.checklist.length).toBeGreaterThanOrEqual(7);
        for (const c of a.checklist) expect({ app: a.app, item: c.item, ok: c.ok }).toEqual({ app: a.app, item: c.item, ok: true });
        expect(a.rotated).toBeDefined();
        expect(a.rotated!.agentSerial).not.toBe(a.agentSerial);
        expect(a.rotated!.leafSerial).not.toBe(a.leafSerial);
        expect(a.rotated).toMatchObject({ oldAgentRevoked: true, oldAgentLoginRefused: true, newAgentLoginWorks: true, newKeyOnlyOnHost: true, leafReRendered: true });
    }
    expect(report.noop).toEqual({ replaced: [], changed: [], restarts: 0 });
    // One app's own epoch rotated it alone: new serials and its previous leaf revoked; every other app kept its serials and was not restarted.
    expect(report.emergency).toMatchObject({ app: apps[0], previousLeafRevoked: true, newLeafServed: true, othersUnchanged: apps.slice(1), othersChanged: [], otherRestarts: 0 });
    const [agentBefore, agentAfter] = report.emergency.agentSerial.split(" -> ");
    expect(agentAfter).not.toBe(agentBefore);
    expect(report.engine).toMatch(/^applier \(asked for with --engine applier\)$/);
    // Both versions read (the drift watch item sees something), the same Vault binary on both sides.
    for (const v of report.versions) expect(v).toMatchObject({ agent: report.vaultVersion, server: report.vaultVersion, warning: "" });
    expect(report.versions.map((v) => v.app)).toEqual(apps);
    // Between rotations: every app verified again (its three steps and nothing else), nothing restarted or reloaded.
    const b = report.between;
    expect([...b.verified.changed].sort()).toEqual(apps.flatMap((a) => [`replace ${a}-verification`, `replace ${a}-verified`, `replace ${a}-verify`]).sort());
    expect(b.verified).toMatchObject({ restarts: 0, reloads: 0 });
    for (const t of b.textfiles) expect(t).toMatchObject({ ok: true });
    expect(b.status).toMatchObject({ healthyExit: 0, listsEveryApp: true });
    if (report.between.swapped) {
        expect(b.swapped).toMatchObject({ app: apps[apps.length - 1], namesBothSerials: true, namesEndpoint: true, recovered: true });
        expect(b.status).toMatchObject({ expiredExit: 1, expiredNamesApp: true });
    }
}

it("rehearses the committed local stack end to end", async () => {
    const report = await rehearse({ sandboxDir: path.join(tmp, "local"), engine: "applier" });
    expectCompleteRotation(report, ["app-a", "app-b"]);
    expect(report.epochs).toEqual({ first: "local-1", rotated: "local-1-rotated" });
    // The sandbox is kept for inspection, with the agents' rendered files.
    expect(fs.existsSync(path.join(tmp, "local", "home", "app-a", "tls", "app-a.fullchain.pem"))).toBe(true);
}, 180_000);

it("rehearses the committed ssh-loopback stack: app-b over a real sshd, logged in as its own user", async () => {
    const sandboxDir = path.join(tmp, "ssh");
    const report = await rehearse({ stackFile: path.join(REPO_ROOT, "test", "stacks", "ssh-loopback.yaml"), sandboxDir, engine: "applier" });
    expectCompleteRotation(report, ["app-a", "app-b"]);
    // sshd's log (kept in the sandbox) shows public-key logins, and only as app-b's user:
    // six sessions on the first run (keygen, agent files, agent config, rotate, verify, record),
    // three on the rotation (keygen, agent files, rotate: it is verified in the next window), none
    // on the no-op or on app-a's emergency, then the verifications between rotations: two (verify,
    // record) for the first; one for the run with the older leaf put back (verify; the runner's
    // check fails); two for the run after it is put right, and two for the run status reads. A
    // 12h verification window that turns during the rehearsal adds one more verification (two).
    const log = fs.readFileSync(path.join(sandboxDir, "sshd.log"), "utf8");
    const logins = [...log.matchAll(/Accepted publickey for (\S+) from 127\.0\.0\.1/g)].map((m) => m[1]);
    const expected = 6 + 3 + 2 + (report.between.swapped ? 1 + 2 : 0) + 2;
    expect([expected, expected + 2]).toContain(logins.length);
    expect(new Set(logins).size).toBe(1);
    // As root app-b has a user of its own; in same-user mode every app is the current user.
    if (runningAsRoot()) expect(logins[0]).toMatch(/app-b$/);
    else expect(logins[0]).toBe(os.userInfo().username);
    // The saved state shows the ssh key only as a digest, and holds no agent key at all (generated on the host).
    const state = fs.readFileSync(path.join(sandboxDir, "state.json"), "utf8");
    expect(state).toContain('"connection": "[secret sha256:');
    expect(state).not.toContain('"stdin"');
    // (The providers' serialized code mentions "PRIVATE KEY-----" in a regex; a key block has base64 after it.)
    expect(state).not.toMatch(/PRIVATE KEY-----(\\n|\n)[A-Za-z0-9+/]{16}/);
}, 180_000);

it("rehearses a three-app stack mixing local and ssh hosts, with debug policy, no KV and no proxy, and cleans up with --clean", async () => {
    const file = writeThreeAppRehearsalStack(path.join(tmp, "Pulumi.three.yaml"));
    const sandboxDir = path.join(tmp, "three");
    const report = await rehearse({ stackFile: file, sandboxDir, clean: true, engine: "applier" });
    expectCompleteRotation(report, ["web", "api", "jobs"]);
    const login = (app: string) => report.apps.find((a) => a.app === app)!.checklist.find((c) => c.item.startsWith("cert-auth login"))!.detail;
    expect(login("web")).toContain("debug-policy");
    expect(login("api")).toBe("token policies: api-issue,default");
    expect(fs.existsSync(sandboxDir)).toBe(false);
}, 180_000);

describe("what it refuses", () => {
    const vault = { address: "https://127.0.0.1:1", caCertFile: "/x", vaultBin: "/bin/true" };
    const local = () => loadStackConfig(path.join(REPO_ROOT, "Pulumi.local.yaml"));

    it.each(["app-b.prod.internal", "10.0.0.7", "128.0.0.1", "::2"])("refuses an ssh host off this machine (%s), naming the key, before starting sshd", async (host) => {
        const config = local();
        const apps = JSON.parse(config["vault-rotation:apps"]);
        apps[1].host = { ssh: { host, port: 22, hostKey: TEST_HOST_KEY } };
        const withSsh = { ...config, "vault-rotation:apps": JSON.stringify(apps), "vault-rotation:sshPrivateKey": "k" };
        await expect(openSandbox({ root: path.join(tmp, "refuse-ssh"), config: withSsh, vault })).rejects.toThrow(
            new RegExp(`apps\\[1\\]\\.host\\.ssh\\.host: ${host.replace(/\./g, "\\.")} is not a loopback address`),
        );
        expect(() => prepareSandbox({ root: path.join(tmp, "refuse-ssh"), config: withSsh, vault })).toThrow(/apps\[1\]\.host\.ssh\.host: .* is not a loopback address/);
    });

    it("refuses a home that would escape the sandbox", () => {
        const config = local();
        const apps = JSON.parse(config["vault-rotation:apps"]);
        apps[0].home = "/home/../../etc";
        expect(() => prepareSandbox({ root: path.join(tmp, "refuse-escape"), config: { ...config, "vault-rotation:apps": JSON.stringify(apps) }, vault })).toThrow(
            /apps\[0\]\.home: must not contain '\.' or '\.\.' segments/,
        );
    });

    it("refuses to wipe a non-empty directory it did not make", async () => {
        const dir = path.join(tmp, "not-ours");
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, "precious.txt"), "keep me");
        await expect(rehearse({ sandboxDir: dir, engine: "applier" })).rejects.toThrow(/refusing to use .*not-ours: it is not empty and was not made by a rehearsal/);
        expect(fs.readFileSync(path.join(dir, "precious.txt"), "utf8")).toBe("keep me");
    });
});
