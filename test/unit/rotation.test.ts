// What a rotation changes: the same config twice is a no-op; a new epoch
// replaces the agent key and exactly what depends on it; the host steps run in
// the documented order.
import { evaluateProgram, Evaluation, Registration, withEpoch } from "../support/harness";
import { fakeListenerCaFile, prodStack, threeAppStack } from "../support/stacks";
import { resolveStepScript } from "../../components/stepScripts";

const caFile = fakeListenerCaFile();

/** A comparable view of one resource: its inputs and replacement trigger. */
function fingerprint(r: Registration): string {
    const { __provider: _ignored, ...inputs } = r.inputs;
    return JSON.stringify({ inputs, trigger: r.replacementTrigger ?? null, deps: r.dependencies });
}

function changedNames(a: Evaluation, b: Evaluation): string[] {
    expect([...b.byName.keys()].sort()).toEqual([...a.byName.keys()].sort());
    return [...a.byName.values()].filter((r) => fingerprint(r) !== fingerprint(b.byName.get(r.name)!)).map((r) => r.name).sort();
}

/** Everything downstream of an app's agent key. */
function downstreamOfAgentKey(app: string): string[] {
    return [
        `${app}-agent-keygen`,
        `${app}-agent-cert`,
        `${app}-agent-files`,
        `${app}-agent-revocation`,
        `${app}-leaf-rotate`,
        `${app}-check`,
        // The verification's inputs name the new agent cert and leaf; its provider does not re-run it for
        // that (the host is read again only in the next window: verify's trigger is the window alone).
        `${app}-verification`,
    ];
}

/** An app's verification between rotations: what a new verification window re-runs, and nothing else. */
function verificationOf(app: string): string[] {
    return [`${app}-verify`, `${app}-verification`];
}

describe("rotation is a replace triggered by the epoch", () => {
    it("gives identical inputs for the same config twice (prod)", async () => {
        const a = await evaluateProgram({ config: prodStack(caFile), stack: "prod" });
        const b = await evaluateProgram({ config: prodStack(caFile), stack: "prod" });
        expect(changedNames(a, b)).toEqual([]);
    });

    it("replaces exactly the agent credentials and the host steps downstream of them on a new epoch (prod)", async () => {
        const a = await evaluateProgram({ config: prodStack(caFile), stack: "prod" });
        const b = await evaluateProgram({ config: withEpoch(prodStack(caFile), "2026-12-27"), stack: "prod" });
        expect(changedNames(a, b)).toEqual([...downstreamOfAgentKey("app-a"), ...downstreamOfAgentKey("app-b")].sort());
        // A new key on the host (its trigger is the epoch), then a new cert in the files step's script.
        expect(b.byName.get("app-a-agent-keygen")!.inputs.triggers).toEqual(["2026-12-27", "vault-rotation agent-app-a"]);
        const filesA = a.byName.get("app-a-agent-files")!;
        const filesB = b.byName.get("app-a-agent-files")!;
        expect(filesB.inputs.create).not.toEqual(filesA.inputs.create);
        expect(filesB.inputs.triggers).toContain("2026-12-27");
    });

    it("does the same for every app of a three-app stack, and nothing else", async () => {
        const secretKeys = ["vault-rotation:sshPrivateKey", "vault-rotation:kvSeedData"];
        const a = await evaluateProgram({ config: threeAppStack(caFile), secretKeys });
        const again = await evaluateProgram({ config: threeAppStack(caFile), secretKeys });
        expect(changedNames(a, again)).toEqual([]);
        const b = await evaluateProgram({ config: withEpoch(threeAppStack(caFile), "e2"), secretKeys });
        expect(changedNames(a, b)).toEqual(["web", "api", "jobs"].flatMap(downstreamOfAgentKey).sort());
    });
});

/** The prod stack with `apps[i].epoch` set (undefined: removed). */
function withAppEpoch(config: Record<string, string>, index: number, epoch: string | undefined): Record<string, string> {
    const apps = JSON.parse(config["vault-rotation:apps"]) as Record<string, unknown>[];
    if (epoch === undefined) delete apps[index].epoch;
    else apps[index].epoch = epoch;
    return { ...config, "vault-rotation:apps": JSON.stringify(apps) };
}

describe("one app's own epoch (an emergency)", () => {
    it("rotates that app alone, and makes its check revoke the leaf it replaces", async () => {
        const a = await evaluateProgram({ config: prodStack(caFile), stack: "prod" });
        const b = await evaluateProgram({ config: withAppEpoch(prodStack(caFile), 1, "2026-12-03-incident"), stack: "prod" });
        expect(changedNames(a, b)).toEqual(downstreamOfAgentKey("app-b").sort());
        expect(b.byName.get("app-b-check")!.inputs.revokePreviousLeaf).toBe(true);
        expect(b.byName.get("app-a-check")!.inputs.revokePreviousLeaf).toBeUndefined();
        const plan = b.exports.rotationPlan as { epoch: string; apps: Record<string, { epoch: string; appEpoch?: string }> };
        expect(plan.apps["app-b"]).toMatchObject({ epoch: `${plan.epoch}+app:2026-12-03-incident`, appEpoch: "2026-12-03-incident" });
        expect(plan.apps["app-a"].epoch).toBe(plan.epoch);
        expect(plan.apps["app-a"].appEpoch).toBeUndefined();
        // A second incident for the same app: again that app alone.
        const c = await evaluateProgram({ config: withAppEpoch(prodStack(caFile), 1, "2026-12-04-again"), stack: "prod" });
        expect(changedNames(b, c)).toEqual(downstreamOfAgentKey("app-b").sort());
    });

    it("is kept by a later run from the same committed config, and the stack's epoch still rotates every app", async () => {
        const config = withAppEpoch(prodStack(caFile), 0, "incident-1");
        const b = await evaluateProgram({ config, stack: "prod" });
        const again = await evaluateProgram({ config, stack: "prod" });
        expect(changedNames(b, again)).toEqual([]);
        const turned = await evaluateProgram({ config: withEpoch(config, "2027-01-01"), stack: "prod" });
        expect(changedNames(again, turned)).toEqual([...downstreamOfAgentKey("app-a"), ...downstreamOfAgentKey("app-b")].sort());
    });

    it("refuses an epoch that could not be a trigger", async () => {
        await expect(evaluateProgram({ config: withAppEpoch(prodStack(caFile), 0, "two words"), stack: "prod" })).rejects.toThrow(/apps\[0\]\.epoch: must be 1-64 characters/);
    });
});

describe("host step order", () => {
    let e: Evaluation;
    beforeAll(async () => {
        e = await evaluateProgram({ config: prodStack(caFile), stack: "prod" });
    });
    const dependsOn = (name: string, on: string) => e.byName.get(name)!.dependencies.includes(e.byName.get(on)!.urn);

    it.each(["app-a", "app-b"])("runs files -> config -> rotate (move aside, restart, wait, read) -> check for %s", (app) => {
        expect(dependsOn(`${app}-leaf-agent-config`, `${app}-agent-files`)).toBe(true);
        expect(dependsOn(`${app}-leaf-rotate`, `${app}-leaf-agent-config`)).toBe(true);
        expect(dependsOn(`${app}-check`, `${app}-leaf-rotate`)).toBe(true);
        expect(dependsOn(`${app}-agent-files`, `${app}-agent-mapping`)).toBe(true);
    });

    it("writes the agent config only after the leaf role and KV policy exist", () => {
        expect(dependsOn("app-a-leaf-agent-config", "app-a-leaf-role")).toBe(true);
        expect(dependsOn("app-a-leaf-agent-config", "app-a-leaf-kv-policy")).toBe(true);
    });

    it("carries the agent cert serial and the epoch in the rotate step's triggers", () => {
        const serial = e.byName.get("app-a-agent-cert")!;
        const triggers = e.byName.get("app-a-leaf-rotate")!.inputs.triggers as unknown[];
        expect(triggers).toContain((e.exports.rotationPlan as { epoch: string }).epoch);
        expect(triggers.some((t) => typeof t === "string" && t.includes(":") && t.length > 20)).toBe(true);
        expect(serial.inputs.backend).toBe("pki_int");
    });

    it("moves the agent's render aside, then restarts vault-agent-<app>, as the app user, in one unit", () => {
        const rotate = resolveStepScript(String(e.byName.get("app-b-leaf-rotate")!.inputs.create));
        expect(rotate).toContain("APP_USER='app-b'");
        expect(rotate).toContain('setpriv --reuid="$uid" --regid="$gid" --init-groups --');
        expect(rotate).toContain("SERVICE='\\''vault-agent-app-b'\\''");
        expect(rotate).toContain("RENDERED='\\''/home/app-b/vault/render/app-b.fullchain.pem'\\''");
        const moveAside = rotate.indexOf('mv -f -T -- "$RENDERED" "$RENDERED_PREV"');
        const restart = rotate.indexOf('systemctl --user restart "$SERVICE" ||');
        expect(moveAside).toBeGreaterThan(0);
        expect(restart).toBeGreaterThan(moveAside);
        expect(rotate.indexOf("trap restore EXIT")).toBeLessThan(moveAside);
    });

    it("re-runs the rotation when the agent config changes, even with the same epoch", async () => {
        const config = prodStack(caFile);
        const apps = JSON.parse(config["vault-rotation:apps"]);
        apps[0].reload.label = "tls=reload";
        const b = await evaluateProgram({ config: { ...config, "vault-rotation:apps": JSON.stringify(apps) }, stack: "prod" });
        expect(changedNames(e, b)).toEqual(["app-a-leaf-agent-config", "app-a-leaf-rotate", "app-a-check"].sort());
    });

    it("re-runs the rotation when the mapping's policies change, so the agent's token follows at once", async () => {
        // app-a keeps the stack's debug-policy in both runs, so only app-b's policy list differs.
        const withDebug = (apps: number[]) => {
            const config = prodStack(caFile);
            const parsed = JSON.parse(config["vault-rotation:apps"]);
            for (const i of apps) parsed[i].agent.debugPolicy = true;
            return evaluateProgram({ config: { ...config, "vault-rotation:apps": JSON.stringify(parsed) }, stack: "dev" });
        };
        const a = await withDebug([0]);
        const b = await withDebug([0, 1]);
        // The takeover survey's desired values change too; its diff reports a change only for a new
        // set of objects (test/unit/providers/vaultTakeover.test.ts), so the engine leaves it alone.
        // The verification follows too: its login must now see the new policies.
        expect(changedNames(a, b)).toEqual(["app-b-agent-mapping", "app-b-leaf-rotate", "app-b-check", "app-b-takeover", ...verificationOf("app-b")].sort());
    });
});

/** The prod program evaluated at `iso`. Only Date is faked: the SDK's timers and promises keep running for real. */
async function atTime(iso: string, config = prodStack(caFile)): Promise<Evaluation> {
    jest.useFakeTimers({
        now: new Date(iso),
        doNotFake: ["nextTick", "setImmediate", "clearImmediate", "setTimeout", "clearTimeout", "setInterval", "clearInterval", "queueMicrotask", "hrtime", "performance"],
    });
    try {
        return await evaluateProgram({ config, stack: "prod" });
    } finally {
        jest.useRealTimers();
    }
}

describe("scheduled rotation (rotation.every) with an injected clock", () => {
    // 720h buckets start at multiples of 30 days since the Unix epoch; 2026-11-03T00:00Z is one.
    const BUCKET = "2026-11-03T00:00:00.000Z";

    it("gives identical inputs for two runs in the same bucket (and the same day: one verification window of 24h)", async () => {
        const a = await atTime("2026-11-03T01:00:00Z");
        const b = await atTime("2026-11-03T23:00:00Z");
        expect(a.exports.rotationPlan).toMatchObject({ epoch: `every-720h-${BUCKET}`, epochSource: "schedule", nextScheduledRotation: "2026-12-03T00:00:00.000Z" });
        expect(changedNames(a, b)).toEqual([]);
    });

    it("replaces the agent keys and what depends on them, and nothing else, when the bucket turns", async () => {
        const a = await atTime("2026-12-02T23:59:00Z");
        const b = await atTime("2026-12-03T00:01:00Z");
        // Midnight UTC also starts a new 24h verification window: each app's host is read again too.
        expect(changedNames(a, b)).toEqual([...downstreamOfAgentKey("app-a"), ...downstreamOfAgentKey("app-b"), "app-a-verify", "app-b-verify"].sort());
    });

    it("lets an explicit epoch win over the bucket", async () => {
        const explicit = withEpoch(prodStack(caFile), "incident-1");
        const a = await atTime("2026-12-02T12:59:00Z", explicit);
        const b = await atTime("2026-12-02T13:01:00Z", explicit);
        expect(changedNames(a, b)).toEqual([]);
        expect(a.exports.rotationPlan).toMatchObject({ epoch: "incident-1", epochSource: "explicit" });
    });
});

describe("verification between rotations (rotation.verifyEvery) with an injected clock", () => {
    const withRotation = (extra: Record<string, unknown>) => {
        const config = prodStack(caFile);
        return { ...config, "vault-rotation:rotation": JSON.stringify({ ...JSON.parse(config["vault-rotation:rotation"]), ...extra }) };
    };

    it("re-verifies every app, and re-runs nothing else, when a new window (runInterval, 24h) starts", async () => {
        const a = await atTime("2026-12-01T23:50:00Z");
        const b = await atTime("2026-12-02T00:10:00Z");
        expect(changedNames(a, b)).toEqual([...verificationOf("app-a"), ...verificationOf("app-b")].sort());
        // What the preview shows for it: the window in the verify step's triggers, old => new.
        expect((a.byName.get("app-a-verify")!.inputs.triggers as unknown[])[0]).toBe("2026-12-01T00:00:00.000Z/24h");
        expect((b.byName.get("app-a-verify")!.inputs.triggers as unknown[])[0]).toBe("2026-12-02T00:00:00.000Z/24h");
        expect(b.exports.verificationPlan).toMatchObject({ every: "24h", everySeconds: 86400, window: "2026-12-02T00:00:00.000Z/24h", nextWindow: "2026-12-03T00:00:00.000Z" });
    });

    it("follows rotation.verifyEvery when it is set, and every-run verifies on every update", async () => {
        const sixHours = withRotation({ verifyEvery: "6h" });
        expect(changedNames(await atTime("2026-12-01T06:05:00Z", sixHours), await atTime("2026-12-01T11:55:00Z", sixHours))).toEqual([]);
        expect(changedNames(await atTime("2026-12-01T11:55:00Z", sixHours), await atTime("2026-12-01T12:05:00Z", sixHours))).toEqual(
            [...verificationOf("app-a"), ...verificationOf("app-b")].sort(),
        );
        const everyRun = withRotation({ verifyEvery: "every-run" });
        expect(changedNames(await atTime("2026-12-01T06:05:00Z", everyRun), await atTime("2026-12-01T06:05:01Z", everyRun))).toEqual(
            [...verificationOf("app-a"), ...verificationOf("app-b")].sort(),
        );
    });

    it("never restarts, reloads or rotates anything in a verification: its host steps are read-only", async () => {
        const e = await atTime("2026-12-01T06:05:00Z");
        for (const app of ["app-a", "app-b"]) {
            const verify = resolveStepScript(String(e.byName.get(`${app}-verify`)!.inputs.create));
            const recorded = resolveStepScript(String(e.byName.get(`${app}-verified`)!.inputs.create));
            for (const script of [verify, recorded]) {
                expect(script).not.toMatch(/systemctl --user (restart|start|stop|reload)|podman (kill|restart|stop)|mv -f -T -- "\$(FULLCHAIN|RENDERED)"/);
            }
            // After the rotation's check, and the pass recorded only after the runner's check.
            expect(e.byName.get(`${app}-verify`)!.dependencies).toContain(e.byName.get(`${app}-check`)!.urn);
            expect(e.byName.get(`${app}-verification`)!.dependencies).toContain(e.byName.get(`${app}-verify`)!.urn);
            expect(e.byName.get(`${app}-verified`)!.dependencies).toContain(e.byName.get(`${app}-verification`)!.urn);
        }
    });
});
