// Sharding: several stacks on one Vault, each with its own `namePrefix`. The
// prefix is validated like the rest of the config, reaches every Vault object
// name (roles, policies, mappings, the debug policy, the KV path) and the agent
// config, and two stacks with the same apps but different prefixes declare no
// Vault object in common. The guardrail pack still recognises prefixed roles.
import { ConfigError, validateStackInputs } from "../../config";
import { checkAgentRoleClientOnly, checkLeafRoleServerOnly, checkNoDebugPolicyInProd, TYPES } from "../../policy/rules";
import { evaluateProgram, flattenConfig, type Evaluation } from "../support/harness";
import { fakeListenerCaFile, rawStackInputs, TEST_LISTENER_CA_PEM, threeAppStackObject } from "../support/stacks";
import { resolveStepScript } from "../../components/stepScripts";

const caFile = fakeListenerCaFile();
const readCa = () => TEST_LISTENER_CA_PEM;

/** The three-app stack as one shard: its prefix and its own cert auth mount. */
function shard(prefix: string | undefined, certAuthPath = prefix ? `cert-${prefix}` : "cert-agents") {
    const stack: Record<string, unknown> = threeAppStackObject(caFile);
    stack["vault-rotation:vault"] = { ...(stack["vault-rotation:vault"] as object), certAuthPath };
    if (prefix !== undefined) stack["vault-rotation:namePrefix"] = prefix;
    return stack;
}

function problems(stack: Record<string, unknown>): string[] {
    try {
        validateStackInputs(rawStackInputs(stack), readCa);
        return [];
    } catch (e) {
        if (e instanceof ConfigError) return e.problems;
        throw e;
    }
}

describe("vault-rotation:namePrefix", () => {
    it("is optional; the declared default \"\" means none", () => {
        expect(validateStackInputs(rawStackInputs(shard(undefined)), readCa).config.namePrefix).toBeUndefined();
        expect(validateStackInputs(rawStackInputs(shard("", "cert-agents")), readCa).config.namePrefix).toBeUndefined();
        expect(validateStackInputs(rawStackInputs(shard("eu1")), readCa).config.namePrefix).toBe("eu1");
        expect(validateStackInputs(rawStackInputs(shard("eu1west")), readCa).config.namePrefix).toBe("eu1west");
    });

    // No '-': with prefixes "eu1" and "eu1-x", app "x-y" of one and app "y" of the other would share `eu1-x-y`.
    it.each(["EU1", "eu_1", "1eu", "eu-", "eu-1", "eu 1", "a;rm", "x".repeat(17)])("rejects %j, naming the key", (prefix) => {
        expect(problems(shard(prefix, "cert"))).toEqual([expect.stringMatching(/^namePrefix: /)]);
    });

    it("requires the stack's own cert auth mount, so two prefixed stacks cannot declare the same one", () => {
        expect(problems(shard("eu1", "cert"))).toEqual([
            'vault-rotation:vault.certAuthPath: with namePrefix "eu1" the cert auth mount must be this stack\'s own, ending in "-eu1" (e.g. "cert-eu1"); got "cert"',
        ]);
        expect(problems(shard("eu1", "cert-eu10"))).toHaveLength(1);
        expect(problems(shard("eu1", "agents/eu1"))).toEqual([]);
    });
});

/** Every Vault object a stack declares, as `<kind> <Vault name or path>`. */
function vaultObjects(e: Evaluation): string[] {
    const out: string[] = [];
    for (const r of e.registrations) {
        const i = r.inputs as Record<string, unknown>;
        if (r.type === "vault:index/policy:Policy") out.push(`policy ${i.name}`);
        if (r.type === "vault:pkiSecret/secretBackendRole:SecretBackendRole") out.push(`pki-role ${i.backend}/${i.name}`);
        if (r.type === "vault:index/certAuthBackendRole:CertAuthBackendRole") out.push(`mapping ${i.backend}/${i.name}`);
        if (r.type === "pulumi-nodejs:dynamic/vault-rotation:CertAuthMount") out.push(`auth ${i.path}`);
        if (r.type === "pulumi-nodejs:dynamic/vault-rotation:KvSeed") out.push(`kv ${i.mount}/${i.path}`);
    }
    return out.sort();
}

describe("two shards on one Vault", () => {
    let eu: Evaluation;
    let us: Evaluation;
    beforeAll(async () => {
        eu = await evaluateProgram({ config: flattenConfig(shard("eu1")), stack: "prod-eu1" });
        us = await evaluateProgram({ config: flattenConfig(shard("us1")), stack: "prod-us1" });
    }, 60_000);

    it("prefix every Vault object name and share none", () => {
        const a = vaultObjects(eu);
        const b = vaultObjects(us);
        expect(a).toEqual(
            expect.arrayContaining([
                "auth cert-eu1",
                "pki-role pki/int/agent-eu1-web",
                "pki-role pki/int/nginx-eu1-web",
                "mapping cert-eu1/agent-eu1-web",
                "policy eu1-web-issue",
                "policy eu1-web-marker",
                "policy eu1-web-kv",
                "policy eu1-debug-policy",
                "kv kv/apps/eu1-web",
            ]),
        );
        expect(a.filter((o) => b.includes(o))).toEqual([]);
        // Every name carries the prefix (the auth mount and KV path included).
        for (const o of a) expect(o).toMatch(/eu1/);
    });

    it("point the mapping at the prefixed policies and the agent config at the prefixed mapping", () => {
        const mapping = eu.registrations.find((r) => r.type === "vault:index/certAuthBackendRole:CertAuthBackendRole" && r.inputs.name === "agent-eu1-web");
        expect(mapping?.inputs.tokenPolicies).toEqual(["eu1-web-issue", "eu1-web-marker", "eu1-web-kv", "eu1-debug-policy"]);
        const kvPolicy = eu.registrations.find((r) => r.type === "vault:index/policy:Policy" && r.inputs.name === "eu1-web-kv");
        expect(String(kvPolicy?.inputs.policy)).toContain('path "kv/data/apps/eu1-web/*"');
        expect(String(kvPolicy?.inputs.policy)).not.toMatch(/apps\/web\b/);
        const config = eu.registrations.find((r) => r.name === "web-leaf-agent-config");
        expect(resolveStepScript(String(config?.inputs.create))).toMatch(/name\s+=\s+"agent-eu1-web"/);
        // Host names are the app's: the unit is still vault-agent-web.
        expect(eu.registrations.some((r) => resolveStepScript(String(r.inputs.create ?? "")).includes("vault-agent-web"))).toBe(true);
    });

    it("keep the guardrails: prefixed roles are still classified, a prod shard's debug policy is flagged", () => {
        const roles = eu.registrations.filter((r) => r.type === TYPES.pkiRole).map((r) => ({ type: r.type, name: r.name, props: r.inputs }));
        expect(roles).toHaveLength(6);
        const flipped = roles.map((r) => ({ ...r, props: { ...r.props, serverFlag: !r.props.serverFlag, clientFlag: !r.props.clientFlag } }));
        // Each role is checked by exactly one of the two usage rules: flipping its flags breaks it.
        expect(flipped.flatMap((r) => [...checkLeafRoleServerOnly(r), ...checkAgentRoleClientOnly(r)]).length).toBeGreaterThanOrEqual(6);
        expect(roles.flatMap((r) => [...checkLeafRoleServerOnly(r), ...checkAgentRoleClientOnly(r)])).toEqual([]);
        const mappings = eu.registrations.filter((r) => r.type === TYPES.certAuthRole).map((r) => ({ type: r.type, name: r.name, props: r.inputs }));
        expect(mappings.flatMap((m) => checkNoDebugPolicyInProd(m, "prod-eu1"))).toEqual([expect.stringContaining('"eu1-debug-policy"')]);
    });
});
