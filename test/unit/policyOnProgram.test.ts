// The guardrail pack against what this program actually declares: the prod
// stack passes every rule; a debug policy on a stack named prod does not.
import {
    checkAgentRoleClientOnly,
    checkLeafRoleServerOnly,
    checkNoDebugPolicyInProd,
    checkNoKeyMaterialInCommands,
    checkNoKeyMaterialInOutputs,
    checkNoPermissiveNames,
    checkTtlCaps,
    RuleResource,
    TYPES,
} from "../../policy/rules";
import { evaluateProgram, Evaluation } from "../support/harness";
import { fakeListenerCaFile, prodStack, threeAppStack } from "../support/stacks";

const caFile = fakeListenerCaFile();

/** Every violation the pack's rules report for an evaluated program. */
function violations(e: Evaluation, stack: string): string[] {
    const out: string[] = [];
    for (const r of e.registrations) {
        const res: RuleResource = { type: r.type, name: r.name, props: r.inputs };
        if (r.type === TYPES.pkiRole) {
            out.push(...checkLeafRoleServerOnly(res), ...checkAgentRoleClientOnly(res), ...checkNoPermissiveNames(res), ...checkTtlCaps(res));
        }
        if (r.type === TYPES.certAuthRole) out.push(...checkNoDebugPolicyInProd(res, stack));
        if (r.type === TYPES.localCommand || r.type === TYPES.remoteCommand) out.push(...checkNoKeyMaterialInCommands(res));
    }
    out.push(...checkNoKeyMaterialInOutputs(e.exports));
    return out;
}

it("passes the prod stack through every rule", async () => {
    const e = await evaluateProgram({ config: prodStack(caFile), stack: "prod" });
    expect(e.registrations.filter((r) => r.type === TYPES.pkiRole)).toHaveLength(4);
    expect(violations(e, "prod")).toEqual([]);
});

it("flags the three-app stack's debug policy only when the stack is prod", async () => {
    const secretKeys = ["vault-rotation:sshPrivateKey", "vault-rotation:kvSeedData"];
    const asProd = await evaluateProgram({ config: threeAppStack(caFile), secretKeys, stack: "prod" });
    const found = violations(asProd, "prod");
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/debug-policy/);
    expect(found[0]).toMatch(/web-agent-mapping/);
    const asStaging = await evaluateProgram({ config: threeAppStack(caFile), secretKeys, stack: "staging" });
    expect(violations(asStaging, "staging")).toEqual([]);
});
