// The `vault-rotation-guardrails` policy pack: every pure rule with passing and failing
// resources, then the pack wiring in policy/index.ts. `new PolicyPack` starts a gRPC
// analyzer server when policy/index.ts is imported, so the class is mocked here; the
// rest of @pulumi/policy (notably its unknown-value proxy) is the real SDK.
import { generateKeyPairSync } from "crypto";
import { PolicyPack } from "@pulumi/policy";
import type {
    PolicyResource,
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
    checkRemoteHostKeyPinned,
    checkNoKeyMaterialInOutputs,
    checkNoPermissiveNames,
    checkTtlCaps,
    containsPrivateKey,
    RuleResource,
    stackFromUrn,
    ttlSeconds,
    TYPES,
} from "../../policy/rules";
import * as pack from "../../policy/index";

jest.mock("@pulumi/policy", () => ({
    ...jest.requireActual("@pulumi/policy"),
    PolicyPack: jest.fn(),
}));

// Real keys in every PEM flavour the rule must catch.
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 });
const KEYS = {
    pkcs8: ec.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    ec: ec.privateKey.export({ type: "sec1", format: "pem" }).toString(),
    rsa: rsa.privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
    encrypted: ec.privateKey
        .export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "test-only" })
        .toString(),
    openssh: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n",
};
const PUBLIC_PEM = ec.publicKey.export({ type: "spki", format: "pem" }).toString();
const CERT_PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ==\n-----END CERTIFICATE-----\n";

/** The agent role as components/agentIdentity.ts declares it. */
function agentRole(overrides: Record<string, unknown> = {}): RuleResource {
    return {
        type: TYPES.pkiRole,
        name: "app-a-agent-role",
        props: {
            name: "agent-app-a",
            clientFlag: true,
            serverFlag: false,
            allowedDomains: ["agent-a.prod.internal"],
            allowBareDomains: true,
            allowSubdomains: false,
            allowGlobDomains: false,
            allowWildcardCertificates: false,
            allowAnyName: false,
            allowLocalhost: false,
            allowIpSans: false,
            ttl: "259200",
            maxTtl: "259200",
            ...overrides,
        },
    };
}

/** The leaf role as components/appLeaf.ts declares it. */
function leafRole(overrides: Record<string, unknown> = {}): RuleResource {
    return {
        type: TYPES.pkiRole,
        name: "app-a-leaf-role",
        props: {
            name: "nginx-app-a",
            serverFlag: true,
            clientFlag: false,
            allowedDomains: ["app-a.internal", "app-a.prod.example.com"],
            allowBareDomains: true,
            allowSubdomains: false,
            allowGlobDomains: false,
            allowWildcardCertificates: false,
            allowAnyName: false,
            allowLocalhost: false,
            allowIpSans: false,
            ttl: "2592000",
            maxTtl: "2592000",
            ...overrides,
        },
    };
}

function without(r: RuleResource, ...fields: string[]): RuleResource {
    const props = { ...r.props };
    for (const f of fields) delete props[f];
    return { ...r, props };
}

function mapping(tokenPolicies: string[]): RuleResource {
    return {
        type: TYPES.certAuthRole,
        name: "app-a-agent-mapping",
        props: { name: "agent-app-a", tokenPolicies, allowedCommonNames: ["agent-a.prod.internal"] },
    };
}

function localCommand(props: Record<string, unknown>): RuleResource {
    return { type: TYPES.localCommand, name: "app-a-agent-files", props: { create: "sh write-agent-files.sh", ...props } };
}

describe("leaf-role-server-only", () => {
    it("passes a server-only nginx role", () => {
        expect(checkLeafRoleServerOnly(leafRole())).toEqual([]);
    });
    it("fails a leaf role that can issue client certs", () => {
        const v = checkLeafRoleServerOnly(leafRole({ clientFlag: true }));
        expect(v).toHaveLength(1);
        expect(v[0]).toMatch(/"nginx-app-a".*"app-a-leaf-role".*clientFlag must be false.*got true/);
    });
    it("fails a leaf role with serverFlag false", () => {
        expect(checkLeafRoleServerOnly(leafRole({ serverFlag: false }))).toEqual([
            expect.stringMatching(/serverFlag must be true.*got false/),
        ]);
    });
    it("counts an unset clientFlag as Vault's default (true)", () => {
        expect(checkLeafRoleServerOnly(without(leafRole(), "clientFlag", "serverFlag"))).toEqual([
            expect.stringMatching(/clientFlag must be false.*unset \(Vault default true\)/),
        ]);
    });
    it("ignores agent roles and other resource types", () => {
        expect(checkLeafRoleServerOnly(agentRole())).toEqual([]);
        expect(checkLeafRoleServerOnly({ ...leafRole({ clientFlag: true }), type: TYPES.certAuthRole })).toEqual([]);
    });
});

describe("agent-role-client-only", () => {
    it("passes a client-only agent role", () => {
        expect(checkAgentRoleClientOnly(agentRole())).toEqual([]);
    });
    it("fails an agent role that can issue server certs", () => {
        expect(checkAgentRoleClientOnly(agentRole({ serverFlag: true }))).toEqual([
            expect.stringMatching(/"agent-app-a".*"app-a-agent-role".*serverFlag must be false.*got true/),
        ]);
    });
    it("fails an agent role with clientFlag false", () => {
        expect(checkAgentRoleClientOnly(agentRole({ clientFlag: false }))).toEqual([
            expect.stringMatching(/clientFlag must be true.*got false/),
        ]);
    });
    it("counts an unset serverFlag as Vault's default (true)", () => {
        expect(checkAgentRoleClientOnly(without(agentRole(), "serverFlag"))).toEqual([
            expect.stringMatching(/serverFlag must be false.*unset \(Vault default true\)/),
        ]);
    });
    it("ignores leaf roles", () => {
        expect(checkAgentRoleClientOnly(leafRole())).toEqual([]);
    });
});

describe("no-permissive-names", () => {
    it("passes the agent and leaf roles the program declares", () => {
        expect(checkNoPermissiveNames(agentRole())).toEqual([]);
        expect(checkNoPermissiveNames(leafRole())).toEqual([]);
    });
    it.each(["allowWildcardCertificates", "allowLocalhost", "allowIpSans", "allowGlobDomains", "allowAnyName"])(
        "fails %s: true",
        (field) => {
            expect(checkNoPermissiveNames(leafRole({ [field]: true }))).toEqual([
                expect.stringMatching(new RegExp(`"nginx-app-a".*${field} must be false, got true`)),
            ]);
        },
    );
    it.each(["allowWildcardCertificates", "allowLocalhost", "allowIpSans"])(
        "counts an unset %s as Vault's default (true)",
        (field) => {
            expect(checkNoPermissiveNames(without(agentRole(), field))).toEqual([
                expect.stringMatching(new RegExp(`${field} must be false, got unset \\(Vault default true\\)`)),
            ]);
        },
    );
    it("accepts unset allowGlobDomains / allowAnyName (Vault default false)", () => {
        expect(checkNoPermissiveNames(without(agentRole(), "allowGlobDomains", "allowAnyName"))).toEqual([]);
    });
    it("reports every default-true flag on a role that sets none", () => {
        const bare: RuleResource = { type: TYPES.pkiRole, name: "r", props: { name: "nginx-x", allowedDomains: ["x.internal"] } };
        expect(checkNoPermissiveNames(bare)).toHaveLength(3);
    });
    it.each([
        ["*.example.com", /allowedDomains\[1\] "\*.example.com" contains a wildcard/],
        ["app-*.internal", /contains a wildcard/],
        ["10.0.0.7", /"10.0.0.7" is an IP address/],
        ["::1", /is an IP address/],
        ["[fd00::1]", /is an IP address/],
        ["192.168.0.0/16", /is an IP address/],
        ["localhost", /"localhost" names localhost/],
        ["app.LOCALHOST", /names localhost/],
    ])("fails allowedDomains entry %s", (entry, message) => {
        const v = checkNoPermissiveNames(leafRole({ allowedDomains: ["app-a.internal", entry] }));
        expect(v).toEqual([expect.stringMatching(message)]);
    });
    it("does not mistake DNS names that merely contain digits or 'localhost' text", () => {
        expect(checkNoPermissiveNames(leafRole({ allowedDomains: ["10-0-0-7.internal", "notlocalhost.example.com"] }))).toEqual([]);
    });
    it("fails a wildcard URI SAN", () => {
        expect(checkNoPermissiveNames(leafRole({ allowedUriSans: ["spiffe://*"] }))).toEqual([
            expect.stringMatching(/allowedUriSans\[0\]/),
        ]);
    });
    it("applies to PKI roles of any name", () => {
        const other: RuleResource = { ...leafRole({ allowAnyName: true }), props: { ...leafRole({ allowAnyName: true }).props, name: "legacy" } };
        expect(checkNoPermissiveNames(other)).toHaveLength(1);
    });
});

describe("ttl-caps", () => {
    it("passes short agent and leaf TTLs under the defaults", () => {
        expect(checkTtlCaps(agentRole())).toEqual([]);
        expect(checkTtlCaps(leafRole())).toEqual([]);
        expect(checkTtlCaps(agentRole({ ttl: "1209600", maxTtl: "1209600" }))).toEqual([]);
        expect(checkTtlCaps(leafRole({ ttl: "7776000", maxTtl: "7776000" }))).toEqual([]);
    });
    it("fails an agent role above 14 days", () => {
        expect(checkTtlCaps(agentRole({ maxTtl: "1209601" }))).toEqual([
            expect.stringMatching(/"agent-app-a".*maxTtl 1209601s exceeds maxAgentTtlSeconds 1209600s/),
        ]);
    });
    it("fails a leaf role above 90 days on ttl and maxTtl", () => {
        const v = checkTtlCaps(leafRole({ ttl: "7776001", maxTtl: "31536000" }));
        expect(v).toEqual([
            expect.stringMatching(/ttl 7776001s exceeds maxLeafTtlSeconds 7776000s/),
            expect.stringMatching(/maxTtl 31536000s exceeds maxLeafTtlSeconds/),
        ]);
    });
    it("caps agent roles with the agent cap, not the leaf cap", () => {
        expect(checkTtlCaps(agentRole({ ttl: "2592000", maxTtl: "2592000" }))).toHaveLength(2);
    });
    it("fails a missing or zero maxTtl (Vault would use the mount's max)", () => {
        expect(checkTtlCaps(without(agentRole(), "maxTtl"))).toEqual([expect.stringMatching(/maxTtl must be set/)]);
        expect(checkTtlCaps(leafRole({ maxTtl: "0" }))).toEqual([expect.stringMatching(/maxTtl must be set/)]);
    });
    it("accepts a missing ttl (bounded by maxTtl)", () => {
        expect(checkTtlCaps(without(leafRole(), "ttl"))).toEqual([]);
    });
    it("honours configured caps", () => {
        expect(checkTtlCaps(agentRole(), { maxAgentTtlSeconds: 86400 })).toHaveLength(2);
        expect(checkTtlCaps(leafRole({ ttl: "31536000", maxTtl: "31536000" }), { maxLeafTtlSeconds: 31536000 })).toEqual([]);
    });
    it("reads durations and rejects unreadable TTLs", () => {
        expect(ttlSeconds("259200")).toBe(259200);
        expect(ttlSeconds("72h")).toBe(259200);
        expect(ttlSeconds("1h30m")).toBe(5400);
        expect(ttlSeconds(3600)).toBe(3600);
        expect(ttlSeconds("")).toBeUndefined();
        expect(checkTtlCaps(agentRole({ ttl: "72h", maxTtl: "400h" }))).toEqual([expect.stringMatching(/maxTtl 1440000s exceeds/)]);
        expect(checkTtlCaps(agentRole({ maxTtl: "three days" }))).toEqual([expect.stringMatching(/"three days" is not a TTL/)]);
    });
    it("ignores roles that are neither agent nor leaf", () => {
        expect(checkTtlCaps({ ...agentRole(), props: { name: "other", maxTtl: "999999999" } })).toEqual([]);
    });
});

describe("no-debug-policy-in-prod", () => {
    it("fails a prod mapping carrying debug-policy", () => {
        expect(checkNoDebugPolicyInProd(mapping(["app-a-issue", "debug-policy"]), "prod")).toEqual([
            expect.stringMatching(/mapping "agent-app-a" \(resource "app-a-agent-mapping"\): tokenPolicies contains "debug-policy".*"prod"/),
        ]);
    });
    it("fails a sharded prod stack's mapping carrying its prefixed debug policy", () => {
        expect(checkNoDebugPolicyInProd(mapping(["eu1-app-a-issue", "eu1-debug-policy"]), "prod-eu1")).toEqual([
            expect.stringMatching(/tokenPolicies contains "eu1-debug-policy", which is not allowed on stack "prod-eu1"/),
        ]);
        expect(checkNoDebugPolicyInProd(mapping(["eu1-app-a-issue", "eu1-debug-policy"]), "production")).toEqual([]);
    });

    it("passes a prod mapping without it, and debug-policy on other stacks", () => {
        expect(checkNoDebugPolicyInProd(mapping(["app-a-issue", "app-a-marker"]), "prod")).toEqual([]);
        expect(checkNoDebugPolicyInProd(mapping(["app-a-issue", "debug-policy"]), "staging")).toEqual([]);
        expect(checkNoDebugPolicyInProd(mapping(["app-a-issue", "debug-policy"]), undefined)).toEqual([]);
    });
    it("reads the stack from a URN", () => {
        expect(stackFromUrn("urn:pulumi:prod::vault-rotation::vault:index/certAuthBackendRole:CertAuthBackendRole::m")).toBe("prod");
        expect(stackFromUrn("urn:pulumi:prod-eu::vault-rotation::pulumi:pulumi:Stack::vault-rotation-prod-eu")).toBe("prod-eu");
        expect(stackFromUrn("not-a-urn")).toBeUndefined();
    });
});

describe("no-key-material-in-commands", () => {
    it("passes a command with certificates and triggers only", () => {
        expect(checkNoKeyMaterialInCommands(localCommand({ environment: { CA: CERT_PEM }, triggers: ["epoch-1"] }))).toEqual([]);
    });
    it("fails a key on stdin: agent keys are generated on the host, never sent", () => {
        expect(checkNoKeyMaterialInCommands(localCommand({ stdin: KEYS.pkcs8 }))).toEqual([
            'command "app-a-agent-files" (command:local:Command): stdin contains PEM private key material; keys are generated on the host and never sent to it',
        ]);
    });
    it("allows the SSH key of a remote command's connection", () => {
        const remote: RuleResource = {
            type: TYPES.remoteCommand,
            name: "app-b-agent-files",
            props: { create: "sh x.sh", connection: { host: "h", user: "u", privateKey: KEYS.openssh } },
        };
        expect(checkNoKeyMaterialInCommands(remote)).toEqual([]);
    });
    it.each(Object.entries(KEYS))("fails a %s key in create", (_kind, key) => {
        expect(checkNoKeyMaterialInCommands(localCommand({ create: `printf '%s' '${key}' > agent.key` }))).toEqual([
            expect.stringMatching(/command "app-a-agent-files" \(command:local:Command\): create contains PEM private key/),
        ]);
    });
    it("fails keys in update, delete, environment values and nested triggers, naming each path", () => {
        const v = checkNoKeyMaterialInCommands({
            type: TYPES.remoteCommand,
            name: "app-b-agent-files",
            props: {
                create: "sh x.sh",
                update: KEYS.ec,
                delete: KEYS.rsa,
                environment: { SAFE: "1", AGENT_KEY: KEYS.pkcs8 },
                triggers: ["epoch", { key: KEYS.encrypted }],
                stdin: KEYS.pkcs8,
            },
        });
        expect(v.map((m) => m.split(": ")[1].replace(/;.*/, ""))).toEqual([
            "update contains PEM private key material",
            "delete contains PEM private key material",
            "environment.AGENT_KEY contains PEM private key material",
            "triggers[1].key contains PEM private key material",
            "stdin contains PEM private key material",
        ]);
    });
    it("catches a base64-encoded PEM key but not certificates or public keys", () => {
        expect(containsPrivateKey(Buffer.from(KEYS.pkcs8).toString("base64"))).toBe(true);
        expect(containsPrivateKey(`KEY_B64=${Buffer.from(KEYS.rsa).toString("base64url")}`)).toBe(true);
        expect(containsPrivateKey(CERT_PEM + PUBLIC_PEM)).toBe(false);
        expect(containsPrivateKey(Buffer.from(CERT_PEM).toString("base64"))).toBe(false);
    });
    it("ignores other resource types", () => {
        expect(checkNoKeyMaterialInCommands({ type: "tls:index/privateKey:PrivateKey", name: "k", props: { create: KEYS.pkcs8 } })).toEqual([]);
    });
});

describe("remote-host-key-pinned", () => {
    const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBv83hDHciwD8/sWXYgYe+9kqysuiEVjwwjxuYeFUSqQ";
    const remote = (connection: Record<string, unknown>): RuleResource => ({ type: TYPES.remoteCommand, name: "app-b-agent-files", props: { create: "sh x.sh", connection } });
    it("passes a remote command with a pinned key, and ignores local commands", () => {
        expect(checkRemoteHostKeyPinned(remote({ host: "h", user: "app-b", privateKey: KEYS.openssh, hostKey: HOST_KEY }))).toEqual([]);
        expect(checkRemoteHostKeyPinned(localCommand({ create: "sh x.sh" }))).toEqual([]);
    });
    it.each([
        ["unset", undefined, /got unset/],
        ["empty", "", /got ""/],
        ["a host-name-prefixed keyscan line", `h ${HOST_KEY}`, /got "h ssh-ed25519/],
        ["a fingerprint", "SHA256:ufrbkUy0NBvJIp3ZQUyDAcFefvw40sIocDKM62jBoZw", /got "SHA256:/],
    ])("fails a connection whose hostKey is %s", (_what, hostKey, got) => {
        expect(checkRemoteHostKeyPinned(remote({ host: "h", user: "app-b", hostKey }))).toEqual([
            expect.stringMatching(new RegExp(`^command "app-b-agent-files" \\(command:remote:Command\\): connection\\.hostKey must pin the host's key as '<type> <base64>' \\(${got.source}`)),
        ]);
    });
});

describe("no-key-material-in-outputs", () => {
    it("passes outputs with certificates, serials and fingerprints", () => {
        expect(checkNoKeyMaterialInOutputs({ apps: [{ serial: "1a:2b", certPem: CERT_PEM }], checklist: "ok" })).toEqual([]);
    });
    it("fails a key at any depth, naming the output path", () => {
        expect(
            checkNoKeyMaterialInOutputs({ agentKey: KEYS.ec, apps: [{ name: "app-a", files: { key: KEYS.pkcs8 } }] }),
        ).toEqual([
            expect.stringMatching(/stack output "agentKey" contains PEM private key/),
            expect.stringMatching(/stack output "apps\[0\].files.key" contains PEM private key/),
        ]);
    });
});

describe("policy/index.ts wiring", () => {
    const byName = new Map(pack.policies.map((p) => [p.name, p]));
    const expectedNames = [
        "leaf-role-server-only",
        "agent-role-client-only",
        "no-permissive-names",
        "ttl-caps",
        "no-debug-policy-in-prod",
        "no-key-material-in-commands",
        "no-key-material-in-outputs",
        "remote-host-key-pinned",
    ];

    it("constructs one PolicyPack named vault-rotation-guardrails with all eight mandatory policies", () => {
        const ctor = PolicyPack as unknown as jest.Mock;
        expect(ctor).toHaveBeenCalledTimes(1);
        const [name, args] = ctor.mock.calls[0] as [string, typeof pack.packArgs];
        expect(name).toBe("vault-rotation-guardrails");
        expect(args.policies.map((p) => p.name).sort()).toEqual([...expectedNames].sort());
        for (const p of args.policies) {
            expect(p.enforcementLevel).toBe("mandatory");
            expect(p.description.length).toBeGreaterThan(20);
        }
    });

    it("declares the TTL caps as ttl-caps config with the documented defaults", () => {
        const props = byName.get("ttl-caps")!.configSchema!.properties;
        expect(props.maxAgentTtlSeconds.default).toBe(1209600);
        expect(props.maxLeafTtlSeconds.default).toBe(7776000);
    });

    /** Runs a resource policy the way the analyzer does and collects its reports. */
    function runResource(policyName: string, type: string, props: Record<string, unknown>, urnStack = "prod", config: object = {}): string[] {
        const policy = byName.get(policyName) as ResourceValidationPolicy;
        const reports: string[] = [];
        const args = {
            type,
            name: "r",
            urn: `urn:pulumi:${urnStack}::vault-rotation::${type}::r`,
            props,
            getConfig: () => config,
        } as unknown as ResourceValidationArgs;
        const validate = policy.validateResource as (a: ResourceValidationArgs, rv: (m: string) => void) => void;
        validate(args, (m) => reports.push(m));
        return reports;
    }

    it("routes resource types to their rules", () => {
        expect(runResource("leaf-role-server-only", TYPES.pkiRole, leafRole({ clientFlag: true }).props)).toHaveLength(1);
        expect(runResource("leaf-role-server-only", TYPES.certAuthRole, leafRole({ clientFlag: true }).props)).toEqual([]);
        expect(runResource("agent-role-client-only", TYPES.pkiRole, agentRole({ serverFlag: true }).props)).toHaveLength(1);
        expect(runResource("no-permissive-names", TYPES.pkiRole, leafRole({ allowIpSans: true }).props)).toHaveLength(1);
        expect(runResource("no-key-material-in-commands", TYPES.remoteCommand, { create: KEYS.ec })).toHaveLength(1);
        expect(runResource("remote-host-key-pinned", TYPES.remoteCommand, { create: "x", connection: { host: "h" } })).toHaveLength(1);
        expect(runResource("remote-host-key-pinned", TYPES.localCommand, { create: "x" })).toEqual([]);
    });

    it("reads the stack for no-debug-policy-in-prod from the resource URN", () => {
        const props = mapping(["debug-policy"]).props;
        expect(runResource("no-debug-policy-in-prod", TYPES.certAuthRole, props, "prod")).toHaveLength(1);
        expect(runResource("no-debug-policy-in-prod", TYPES.certAuthRole, props, "staging")).toEqual([]);
    });

    it("passes policy config to ttl-caps and falls back to defaults without it", () => {
        expect(runResource("ttl-caps", TYPES.pkiRole, agentRole().props, "prod", { maxAgentTtlSeconds: 3600 })).toHaveLength(2);
        expect(runResource("ttl-caps", TYPES.pkiRole, agentRole().props, "prod", {})).toEqual([]);
    });

    it("scans known command strings even when another input is unknown during preview", () => {
        // The SDK's own proxy: reading `update` (an unknown) would throw.
        const { unknownCheckingProxy, UnknownValueError } = jest.requireActual("@pulumi/policy");
        const unknownString = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
        const proxied = unknownCheckingProxy({ create: "sh x.sh", update: unknownString, environment: { K: KEYS.pkcs8 } });
        expect(() => proxied.update).toThrow(UnknownValueError);
        expect(pack.rawProps(proxied).update).toBe(unknownString);
        expect(runResource("no-key-material-in-commands", TYPES.localCommand, proxied)).toEqual([
            expect.stringMatching(/environment.K contains PEM private key/),
        ]);
    });

    it("checks the root stack resource's outputs and reports against its URN", () => {
        const policy = byName.get("no-key-material-in-outputs") as StackValidationPolicy;
        const stackUrn = "urn:pulumi:prod::vault-rotation::pulumi:pulumi:Stack::vault-rotation-prod";
        const resources = [
            { type: TYPES.stack, urn: stackUrn, name: "vault-rotation-prod", props: { apps: { "app-a": { key: KEYS.pkcs8 } } } },
            // A key in another resource's own (secret) outputs is not a stack output.
            { type: "vault:pkiSecret/secretBackendCert:SecretBackendCert", urn: "urn:x", name: "k", props: { privateKey: KEYS.pkcs8 } },
            // A host step that printed public facts only.
            { type: TYPES.localCommand, urn: "urn:ok", name: "app-a-agent-keygen", props: { stdout: "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----", stderr: "vault-rotation: app-a: agent-keygen: ..." } },
        ] as unknown as PolicyResource[];
        const reports: Array<[string, string | undefined]> = [];
        const validate = policy.validateStack as (a: StackValidationArgs, rv: (m: string, urn?: string) => void) => void;
        validate({ resources } as unknown as StackValidationArgs, (m, urn) => reports.push([m, urn]));
        expect(reports).toEqual([[expect.stringMatching(/stack output "apps.app-a.key"/), stackUrn]]);
    });

    it("fails a host step whose stdout or stderr holds a private key, reporting against that command", () => {
        const policy = byName.get("no-key-material-in-outputs") as StackValidationPolicy;
        const resources = [
            { type: TYPES.remoteCommand, urn: "urn:keygen", name: "app-b-agent-keygen", props: { stdout: `-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n${KEYS.pkcs8}`, stderr: "" } },
            { type: TYPES.localCommand, urn: "urn:files", name: "app-a-agent-files", props: { stdout: "", stderr: `debug: ${Buffer.from(KEYS.ec).toString("base64")}` } },
        ] as unknown as PolicyResource[];
        const reports: Array<[string, string | undefined]> = [];
        const validate = policy.validateStack as (a: StackValidationArgs, rv: (m: string, urn?: string) => void) => void;
        validate({ resources } as unknown as StackValidationArgs, (m, urn) => reports.push([m, urn]));
        expect(reports).toEqual([
            ['command "app-b-agent-keygen" (command:remote:Command): stdout contains PEM private key material; a host step prints public facts only (its output is kept in state)', "urn:keygen"],
            [expect.stringMatching(/^command "app-a-agent-files" \(command:local:Command\): stderr contains PEM private key material/), "urn:files"],
        ]);
    });
});
