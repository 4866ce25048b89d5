// Entry point of the `vault-rotation-guardrails` policy pack (PulumiPolicy.yaml `main`).
// Wiring only: each policy adapts the CrossGuard callback arguments to a pure rule in
// ./rules and reports what it returns. Importing this module starts the pack's gRPC
// analyzer server (that is what `new PolicyPack` does), so tests mock the PolicyPack
// class and check the exported `policies` and `packArgs` instead (test/unit/policy.test.ts).
import { PolicyPack } from "@pulumi/policy";
import type {
    PolicyPackArgs,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
} from "@pulumi/policy";
import {
    checkAgentRoleClientOnly,
    checkLeafRoleServerOnly,
    checkNoDebugPolicyInProd,
    checkNoKeyMaterialInCommands,
    checkNoKeyMaterialInCommandOutput,
    checkNoKeyMaterialInOutputs,
    checkNoPermissiveNames,
    checkRemoteHostKeyPinned,
    checkTtlCaps,
    DEFAULT_TTL_CAPS,
    POLICY_NAMES,
    RuleResource,
    stackFromUrn,
    TtlCaps,
    TYPES,
} from "./rules";

export const PACK_NAME = "vault-rotation-guardrails";

/**
 * The props the policy SDK hands us are wrapped in a proxy that throws when an unknown
 * (preview-time) value is read; the SDK turns that into an advisory "can't run during
 * preview". The key-material scans must still check the known strings when some other
 * field is unknown, so they read the raw object behind the proxy: unknowns are then
 * opaque sentinel strings that hold no key. (`__getSpecialProxyTarget` is the SDK's own
 * accessor, see @pulumi/policy/proxy.js; on a plain object it is undefined.)
 */
export function rawProps(props: Record<string, unknown>): Record<string, unknown> {
    const target = (props as { __getSpecialProxyTarget?: unknown }).__getSpecialProxyTarget;
    return target !== null && typeof target === "object" ? (target as Record<string, unknown>) : props;
}

function asRuleResource(args: ResourceValidationArgs, props: Record<string, unknown> = args.props): RuleResource {
    return { type: args.type, name: args.name, props };
}

function report(messages: string[], reportViolation: ReportViolation): void {
    for (const m of messages) reportViolation(m);
}

/** A resource policy on the given types that reports what `rule` returns. */
function resourcePolicy(
    name: string,
    description: string,
    types: readonly string[],
    rule: (args: ResourceValidationArgs) => string[],
    extra: Partial<ResourceValidationPolicy> = {},
): ResourceValidationPolicy {
    return {
        name,
        description,
        enforcementLevel: "mandatory",
        ...extra,
        validateResource: (args, reportViolation) => {
            if (!types.includes(args.type)) return;
            report(rule(args), reportViolation);
        },
    };
}

const roleTypes = [TYPES.pkiRole];
const commandTypes = [TYPES.localCommand, TYPES.remoteCommand];

export const ttlCapsConfigSchema = {
    properties: {
        maxAgentTtlSeconds: {
            type: "integer" as const,
            minimum: 1,
            default: DEFAULT_TTL_CAPS.maxAgentTtlSeconds,
            description: "Largest ttl/maxTtl (seconds) an agent-<app> PKI role may carry (default 14 days).",
        },
        maxLeafTtlSeconds: {
            type: "integer" as const,
            minimum: 1,
            default: DEFAULT_TTL_CAPS.maxLeafTtlSeconds,
            description: "Largest ttl/maxTtl (seconds) an nginx-<app> PKI role may carry (default 90 days).",
        },
    },
};

const noKeyMaterialInOutputs: StackValidationPolicy = {
    name: POLICY_NAMES.noKeyMaterialInOutputs,
    description: "No stack output, at any depth, and no host step's stdout or stderr (kept in state) may contain PEM private key material.",
    enforcementLevel: "mandatory",
    remediationSteps: "Export a certificate serial or fingerprint; keep private keys as secret resource outputs only.",
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        // Stack outputs are the outputs of the root `pulumi:pulumi:Stack` resource; a
        // command's props here are its outputs, stdout and stderr among them.
        for (const r of args.resources) {
            const props = rawProps(r.props);
            const found = r.type === TYPES.stack ? checkNoKeyMaterialInOutputs(props) : checkNoKeyMaterialInCommandOutput({ type: r.type, name: r.name, props });
            for (const m of found) reportViolation(m, r.urn);
        }
    },
};

export const policies: Array<ResourceValidationPolicy | StackValidationPolicy> = [
    resourcePolicy(
        POLICY_NAMES.leafRoleServerOnly,
        "nginx-<app> PKI roles issue server certificates only: serverFlag true, clientFlag false (unset counts as Vault's default, true).",
        roleTypes,
        (args) => checkLeafRoleServerOnly(asRuleResource(args)),
    ),
    resourcePolicy(
        POLICY_NAMES.agentRoleClientOnly,
        "agent-<app> PKI roles issue client certificates only: clientFlag true, serverFlag false (unset counts as Vault's default, true).",
        roleTypes,
        (args) => checkAgentRoleClientOnly(asRuleResource(args)),
    ),
    resourcePolicy(
        POLICY_NAMES.noPermissiveNames,
        "PKI roles allow no wildcard, glob, any-name, localhost or IP-SAN issuance (unset counts as Vault's default), and no allowedDomains entry with '*', an IP address or localhost.",
        roleTypes,
        (args) => checkNoPermissiveNames(asRuleResource(args)),
    ),
    resourcePolicy(
        POLICY_NAMES.ttlCaps,
        "agent-<app> and nginx-<app> PKI roles set maxTtl, and their ttl/maxTtl stay within maxAgentTtlSeconds / maxLeafTtlSeconds.",
        roleTypes,
        (args) => checkTtlCaps(asRuleResource(args), args.getConfig<Partial<TtlCaps>>()),
        { configSchema: ttlCapsConfigSchema },
    ),
    resourcePolicy(
        POLICY_NAMES.noDebugPolicyInProd,
        "On the prod stack, no cert-auth mapping carries debug-policy in tokenPolicies.",
        [TYPES.certAuthRole],
        (args) => checkNoDebugPolicyInProd(asRuleResource(args), stackFromUrn(args.urn)),
    ),
    resourcePolicy(
        POLICY_NAMES.noKeyMaterialInCommands,
        "Host commands never carry PEM private key material in create/update/delete, stdin, environment, triggers or other inputs (only the SSH key in connection): the agent key is generated on its host.",
        commandTypes,
        (args) => checkNoKeyMaterialInCommands(asRuleResource(args, rawProps(args.props))),
    ),
    resourcePolicy(
        POLICY_NAMES.remoteHostKeyPinned,
        "Remote host commands pin the host's SSH key (connection.hostKey '<type> <base64>'): without it any host answering at that address runs the steps and has its own key signed as the app's agent.",
        [TYPES.remoteCommand],
        (args) => checkRemoteHostKeyPinned(asRuleResource(args, rawProps(args.props))),
    ),
    noKeyMaterialInOutputs,
];

export const packArgs: PolicyPackArgs = {
    description:
        "Guardrails for the vault-rotation program: least-privilege PKI roles, short TTLs, no debug policy in prod, no private keys in commands or outputs, pinned SSH host keys.",
    enforcementLevel: "mandatory",
    policies,
};

new PolicyPack(PACK_NAME, packArgs);
