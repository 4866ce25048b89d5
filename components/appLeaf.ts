// The app's frontend leaf certificate (DESIGN.md step 2): the nginx role, KV
// access, the Vault Agent config that renders the fullchain, the reload hook,
// and the rotation sequence on the host.
import * as pulumi from "@pulumi/pulumi";
import * as vault from "@pulumi/vault";
import type { VaultConnection } from "../providers/connection";
import { KvSeed } from "../providers/kvSeed";
import { hostCommand, HostTarget } from "./hostCommand";
import { restrictedRoleArgs, type RestrictedRoleInput } from "./pkiRole";
import { hostPaths, vaultNames } from "../lib/naming";
import { sha256Hex } from "../lib/digest";
import { renderAgentConfig, renderFullchainTemplate } from "./renderers/agentHcl";
import { renderKvPolicy } from "./renderers/policies";
import { metricsPaths, renderAgentConfigScript, renderReloadHook, renderRotateScript } from "./renderers/scripts";

export interface AppLeafArgs {
    /** App name (`[a-z][a-z0-9-]*`). */
    app: string;
    /** The stack's `namePrefix` (sharding), in every Vault object name and the KV path; undefined for none. */
    namePrefix?: string;
    /** Unix user that owns the files and runs the agent's user service. */
    user: string;
    /** The app user's home directory (absolute). */
    home: string;
    /** Where the host commands run. */
    host: HostTarget;
    /** The rotation epoch; carried by every rotation step's triggers. */
    epoch: pulumi.Input<string>;
    /** Serial of the agent cert the host now holds; a new one re-runs the rotation steps. */
    agentCertSerial: pulumi.Input<string>;
    /** The step that wrote the agent's key, cert and CA files; everything here comes after it. */
    agentFilesWritten: pulumi.Resource;
    /**
     * The policies on the agent's cert-auth mapping. A change re-runs the rotation: the restarted agent
     * logs in again, so a removed policy (strict mode) leaves its token now rather than at token expiry,
     * and the host's login verdict is about the mapping as it is now.
     */
    tokenPolicies: pulumi.Input<string[]>;
    /** PKI mount that issues the leaf. */
    pkiMount: string;
    /** Mount path of the cert auth method (without `auth/`). */
    certAuthPath: string;
    /** Vault address as the agent on the host reaches it. */
    agentVaultAddress: string;
    /** Leaf common name (inside allowedDomains). */
    commonName: string;
    /** Leaf alt names (each inside allowedDomains). */
    altNames: string[];
    /** The only names the `nginx-<app>` role may issue for. */
    allowedDomains: string[];
    /** Leaf TTL in seconds. */
    ttlSeconds: number;
    /** Leaf TTL as written in config (for the template), e.g. `720h`. */
    ttl: string;
    /** KV access: the mount, its detected version and seeding, or undefined for no KV access at all. */
    kv?: {
        mount: string;
        version: pulumi.Input<"1" | "2">;
        /** Write `apps/<app>` when it is absent (never overwrites). */
        seed: boolean;
        /** Seed data (a secret). */
        seedData?: pulumi.Input<Record<string, string>>;
    };
    /** How the KV seed resource reaches Vault (no secrets). */
    connection: VaultConnection;
    /** Podman label whose containers reload after a render, e.g. `tls=true`. */
    reloadLabel: string;
    /** Edge proxy to reload after the labelled containers, e.g. `podman:edge-proxy`. */
    reloadProxy?: string;
    /** Signal sent to reload a container. */
    reloadSignal: string;
    /** Seconds to wait for the agent to render a new fullchain. */
    waitSeconds: number;
    /** The node_exporter textfile the post-hook rewrites after each render. */
    metricsTextfile: string;
    /** Reads what already exists before the first write (VaultTakeover): the role and KV policy wait for it. */
    takeover?: pulumi.Resource;
}

/** The leaf role: server certs for the configured names only. */
export function leafRoleInput(a: Pick<AppLeafArgs, "app" | "namePrefix" | "pkiMount" | "allowedDomains" | "ttlSeconds">): RestrictedRoleInput {
    return { backend: a.pkiMount, name: vaultNames(a.app, a.namePrefix).leafRole, usage: "server", allowedDomains: a.allowedDomains, ttlSeconds: a.ttlSeconds };
}

export class AppLeaf extends pulumi.ComponentResource {
    public readonly roleName: pulumi.Output<string>;
    /** `<app>-kv` when KV access is on. */
    public readonly kvPolicyName: pulumi.Output<string | undefined>;
    /** `existed`, `seeded` or `missing` for `apps/<app>`; `disabled` without KV access. */
    public readonly kvStatus: pulumi.Output<string>;
    /** Vault policies this component created (the agent mapping must exist after them). */
    public readonly policies: pulumi.Resource[];
    /** Output of the rotate step: public certificate text, reload report, service state, login result, agent version. */
    public readonly hostState: pulumi.Output<string>;
    /** The last step of the rotation sequence; verification runs after it. */
    public readonly rotated: pulumi.Resource;

    constructor(name: string, args: AppLeafArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vault-rotation:components:AppLeaf", name, {}, opts);
        const names = vaultNames(args.app, args.namePrefix);
        const paths = hostPaths(args.home, args.app);

        // Server certs only, only the configured names; every permissive default off.
        const after = args.takeover ? [args.takeover] : [];
        const role = new vault.pkisecret.SecretBackendRole(`${name}-role`, restrictedRoleArgs(leafRoleInput(args)), { parent: this, dependsOn: after });

        this.policies = [];
        if (args.kv) {
            const kv = args.kv;
            this.policies.push(
                new vault.Policy(
                    `${name}-kv-policy`,
                    { name: names.kvPolicy, policy: pulumi.output(kv.version).apply((v) => renderKvPolicy(kv.mount, names.qualified, v)) },
                    { parent: this, dependsOn: after },
                ),
            );
        }
        // Reports whether apps/<app> exists; seeds it only when enabled and absent.
        const kvSeed = args.kv
            ? new KvSeed(
                  `${name}-kv-seed`,
                  {
                      connection: args.connection,
                      mount: args.kv.mount,
                      version: args.kv.version,
                      path: names.kvPath,
                      seed: args.kv.seed,
                      data: args.kv.seedData,
                  },
                  { parent: this },
              )
            : undefined;

        const agentHclText = renderAgentConfig({
            vaultAddress: args.agentVaultAddress,
            certAuthPath: args.certAuthPath,
            mappingName: names.mapping,
            caPem: paths.caPem,
            agentCert: paths.agentCert,
            agentKey: paths.agentKey,
            template: paths.template,
            // The agent renders to its private target; the hook installs it where the app reads it.
            fullchain: paths.renderedFullchain,
            hook: paths.hook,
            hookTimeoutSeconds: 30,
            pidFile: `${args.home}/vault/agent.pid`,
        });
        const templateText = renderFullchainTemplate({
            pkiMount: args.pkiMount,
            leafRole: names.leafRole,
            commonName: args.commonName,
            altNames: args.altNames,
            ttl: args.ttl,
        });
        const hookText = renderReloadHook({
            app: args.app,
            label: args.reloadLabel,
            proxy: args.reloadProxy,
            signal: args.reloadSignal,
            renderedFullchain: paths.renderedFullchain,
            fullchain: paths.fullchain,
            statusFile: paths.reloadStatus,
            metrics: metricsPaths(args.home, args.app, args.metricsTextfile),
        });
        const hostUser = { app: args.app, user: args.user, home: args.home, hostPath: args.host.path, timeoutSeconds: args.host.stepTimeoutSeconds };

        // Order on the host, always: agent files -> agent config, template, hook ->
        // the rotation unit (move aside, restart, wait, read back).
        const config = hostCommand(
            `${name}-agent-config`,
            args.host,
            { script: renderAgentConfigScript({ ...hostUser, agentHclText, templateText, hookText }) },
            { parent: this, dependsOn: [args.agentFilesWritten, role, ...this.policies] },
        );

        // A changed agent config, template or hook must reach the running agent
        // too: its digest joins the serial, the epoch and the mapping's policies in the triggers.
        // Move-aside, restart, wait and read-back are one command because they are
        // one unit on the host: a failure anywhere in it puts the previous
        // fullchain back (see renderRotateScript).
        const configDigest = sha256Hex(agentHclText + templateText + hookText);
        const rotate = hostCommand(
            `${name}-rotate`,
            args.host,
            {
                script: renderRotateScript({
                    ...hostUser,
                    service: names.service,
                    waitSeconds: args.waitSeconds,
                    login: { vaultAddress: args.agentVaultAddress, certAuthPath: args.certAuthPath, mapping: names.mapping },
                }),
                triggers: [args.agentCertSerial, args.epoch, configDigest, pulumi.output(args.tokenPolicies).apply((p) => [...p].sort().join(","))],
            },
            { parent: this, dependsOn: [config] },
        );

        this.roleName = role.name;
        this.kvPolicyName = pulumi.output(args.kv ? names.kvPolicy : undefined);
        this.kvStatus = kvSeed ? kvSeed.status : pulumi.output("disabled");
        this.hostState = rotate.stdout;
        this.rotated = rotate;
        this.registerOutputs({ roleName: this.roleName, kvPolicyName: this.kvPolicyName, kvStatus: this.kvStatus });
    }
}
