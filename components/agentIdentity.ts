// The Vault Agent's mTLS login identity for one app (DESIGN.md step 1).
import * as pulumi from "@pulumi/pulumi";
import * as vault from "@pulumi/vault";
import { CertRevocation } from "../providers/certRevocation";
import type { VaultConnection } from "../providers/connection";
import { hostCommand, HostTarget } from "./hostCommand";
import { restrictedRoleArgs, type RestrictedRoleInput } from "./pkiRole";
import { debugPolicyName, vaultNames } from "../lib/naming";
import { renderIssuePolicy, renderMarkerPolicy } from "./renderers/policies";
import { renderAgentFilesScript, renderAgentKeygenScript } from "./renderers/scripts";

export interface AgentIdentityArgs {
    /** App name (`[a-z][a-z0-9-]*`); names every Vault object of the app. */
    app: string;
    /** The stack's `namePrefix` (sharding), in every Vault object name; undefined for none. */
    namePrefix?: string;
    /** Unix user that owns the agent's files. */
    user: string;
    /** The app user's home directory (absolute). */
    home: string;
    /** Where the host files are written. */
    host: HostTarget;
    /** The rotation epoch: a new value replaces the agent key and everything issued from it. */
    epoch: pulumi.Input<string>;
    /** PKI mount that signs agent and leaf certificates. */
    pkiMount: string;
    /** Mount path of the stack's cert auth method (an Output of it, so the mapping waits for the mount). */
    certAuthPath: pulumi.Input<string>;
    /** The agent certificate's common name; the only name the agent role allows. */
    commonName: string;
    /** Agent certificate TTL in seconds (short: days, not months). */
    ttlSeconds: number;
    /** Renew the signed cert on any run once fewer than this many seconds remain. */
    renewBeforeSeconds: number;
    /** Attach the `<app>-marker` policy to the mapping. */
    markerPolicy: boolean;
    /** Attach the stack's `debug-policy` to the mapping (never in strict mode). */
    debugPolicy: boolean;
    /** Policies of other parts of the app (the leaf's `<app>-kv`) to put on the mapping too. */
    extraPolicies: string[];
    /** PEM bundle that verifies Vault's listener; written as `<home>/vault/ca/ca.pem`. */
    listenerCaPem: string;
    /** How the revocation resource reaches Vault (no secrets). */
    connection: VaultConnection;
    /** Token TTL of agent logins, seconds. */
    tokenTtlSeconds: number;
    /** Reads what already exists before the first write (VaultTakeover): every Vault object here waits for it. */
    takeover?: pulumi.Resource;
}

/** The agent role: client certs for the agent's CN only, carrying the stack's OU mark for the agent. */
export function agentRoleInput(a: Pick<AgentIdentityArgs, "app" | "namePrefix" | "pkiMount" | "commonName" | "ttlSeconds">): RestrictedRoleInput {
    const names = vaultNames(a.app, a.namePrefix);
    return { backend: a.pkiMount, name: names.agentRole, usage: "client", allowedDomains: [a.commonName], ttlSeconds: a.ttlSeconds, organizationalUnit: names.agentIdentityOu };
}

/** The policies the mapping attaches, in order (Vault adds `default` at login). */
export function mappingPolicyNames(a: Pick<AgentIdentityArgs, "app" | "namePrefix" | "markerPolicy" | "debugPolicy" | "extraPolicies">): string[] {
    const names = vaultNames(a.app, a.namePrefix);
    return [
        names.issuePolicy,
        ...(a.markerPolicy ? [names.markerPolicy] : []),
        ...a.extraPolicies,
        // debug-policy itself is a stack-level object (several apps may use it); this only attaches it.
        ...(a.debugPolicy ? [debugPolicyName(a.namePrefix)] : []),
    ];
}

/** The mapping's fields besides its certificate, as Vault's API names them (the takeover notes compare them). */
export function mappingVaultParams(a: Pick<AgentIdentityArgs, "app" | "namePrefix" | "commonName" | "markerPolicy" | "debugPolicy" | "extraPolicies" | "tokenTtlSeconds">): Record<string, unknown> {
    return {
        allowed_common_names: [a.commonName],
        allowed_organizational_units: [vaultNames(a.app, a.namePrefix).agentIdentityOu],
        token_policies: mappingPolicyNames(a),
        token_ttl: a.tokenTtlSeconds,
        token_max_ttl: a.tokenTtlSeconds * 2,
        token_type: "service",
    };
}

export class AgentIdentity extends pulumi.ComponentResource {
    /** `agent-<app>` PKI role name. */
    public readonly roleName: pulumi.Output<string>;
    /** `auth/<path>/certs/<mappingName>` */
    public readonly mappingName: pulumi.Output<string>;
    /** Policies the mapping attaches (without Vault's implicit `default`). */
    public readonly tokenPolicies: pulumi.Output<string[]>;
    public readonly certSerial: pulumi.Output<string>;
    /** Unix seconds at which the agent cert expires. */
    public readonly certExpiration: pulumi.Output<number>;
    /** The signed cert is within its renewal window: this run renews it (provider-computed). */
    public readonly certRenewPending: pulumi.Output<boolean>;
    public readonly certPem: pulumi.Output<string>;
    /** The command that wrote key, cert and CA to the host; later steps depend on it. */
    public readonly filesWritten: pulumi.Resource;
    /**
     * Serial (hex) of the agent cert the files step replaced on the host, as the
     * host reported it ("" when none): on a first run, the runbook's. Untrusted:
     * RotationCheck revokes it only when Vault issued it for this agent's CN.
     */
    public readonly replacedCertSerial: pulumi.Output<string>;

    constructor(name: string, args: AgentIdentityArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vault-rotation:components:AgentIdentity", name, {}, opts);
        const names = vaultNames(args.app, args.namePrefix);
        const ttl = String(args.ttlSeconds);

        // Client certs for the agent's CN only; every permissive default off. Each
        // carries this stack's mark for the agent in its OU, which the mapping
        // requires: a certificate for the same CN from a role of another stack
        // (another prefix) or of anyone else on this mount does not carry it.
        const after = args.takeover ? [args.takeover] : [];
        const role = new vault.pkisecret.SecretBackendRole(`${name}-role`, restrictedRoleArgs(agentRoleInput(args)), { parent: this, dependsOn: after });

        // The key is generated on the host, as the app user, and never leaves it:
        // this step keeps it beside the live one (agent.key.next) and prints its
        // CSR, which is all Vault and Pulumi state ever see. A new epoch runs it
        // again (a new key, hence a new cert and everything issued from it).
        const hostUser = { app: args.app, user: args.user, home: args.home, hostPath: args.host.path, timeoutSeconds: args.host.stepTimeoutSeconds };
        const keygen = hostCommand(
            `${name}-keygen`,
            args.host,
            {
                script: renderAgentKeygenScript({ ...hostUser, commonName: args.commonName }),
                // The OU mark too: a cert signed before the role carried it cannot
                // log in once the mapping requires it, so the run that adds the
                // requirement (an upgrade) also makes a new key and cert.
                triggers: [args.epoch, names.agentIdentityOu],
            },
            { parent: this },
        );

        const cert = new vault.pkisecret.SecretBackendSign(
            `${name}-cert`,
            {
                backend: args.pkiMount,
                name: role.name,
                csr: keygen.stdout,
                commonName: args.commonName,
                ttl,
                format: "pem",
                autoRenew: true,
                minSecondsRemaining: args.renewBeforeSeconds,
                excludeCnFromSans: false,
            },
            { parent: this },
        );

        const issuePolicy = new vault.Policy(
            `${name}-issue-policy`,
            { name: names.issuePolicy, policy: renderIssuePolicy(args.pkiMount, names.leafRole) },
            { parent: this, dependsOn: after },
        );
        const policyResources: pulumi.Resource[] = [issuePolicy];
        if (args.markerPolicy) {
            policyResources.push(
                new vault.Policy(`${name}-marker-policy`, { name: names.markerPolicy, policy: renderMarkerPolicy(args.app) }, { parent: this, dependsOn: after }),
            );
        }
        const policyNames = mappingPolicyNames(args);

        // The mapping trusts exactly the CA that issued the agent's cert: not the
        // root (any other intermediate under it could then issue for this CN),
        // not the listener CA bundle. When the PKI's issuer is rotated, the next
        // renewal or rotation signs with the new issuer and updates this in the
        // same run, before the new files reach the host. Besides the CN it
        // requires the agent's OU mark (the role above), so another stack's role
        // for the same CN cannot make a certificate that logs in here.
        const mapping = new vault.CertAuthBackendRole(
            `${name}-mapping`,
            {
                backend: args.certAuthPath,
                name: names.mapping,
                certificate: cert.issuingCa.apply((issuing) => `${issuing.trim()}\n`),
                allowedCommonNames: [args.commonName],
                allowedOrganizationalUnits: [names.agentIdentityOu],
                tokenPolicies: policyNames,
                tokenTtl: args.tokenTtlSeconds,
                tokenMaxTtl: args.tokenTtlSeconds * 2,
                tokenType: "service",
            },
            // Every rotation or renewal replaces the mapping: the provider replaces the
            // re-signed cert (same role name) delete-before-replace, and the engine then
            // replaces what takes ForceNew inputs from it (`certificate`, from the cert's
            // issuer). Replaced create-before-delete, the old object's delete would
            // remove the new one at the same path (auth/<path>/certs/<name>) at the end of
            // the update and every agent's next login would fail; so delete-first is
            // stated here rather than left to the provider's naming rule. The path is
            // gone until the new cert is signed and the mapping written again (a few
            // Vault requests), before this app's agent restarts.
            { parent: this, dependsOn: [...policyResources, ...after], deleteBeforeReplace: true },
        );

        const filesScript = pulumi
            .all([cert.certificate, args.listenerCaPem])
            .apply(([certPem, caPem]) => renderAgentFilesScript({ ...hostUser, agentCertPem: certPem, listenerCaPem: caPem }));

        // Installs the cert with the host's key for it (nothing secret travels).
        const files = hostCommand(
            `${name}-files`,
            args.host,
            { script: filesScript, triggers: [cert.serialNumber, args.epoch] },
            { parent: this, dependsOn: [mapping] },
        );

        // Revokes the cert it records when it is replaced or destroyed, and
        // refreshes the cert auth method's copy of the CRL (cert auth does not see
        // PKI revocations otherwise). Pulumi
        // deletes a replaced resource after its successor (and the host files that
        // depend on it) are in place, so the old cert stays valid until then.
        new CertRevocation(
            `${name}-revocation`,
            { connection: args.connection, pkiMount: args.pkiMount, serialNumber: cert.serialNumber, certAuthPath: args.certAuthPath },
            { parent: this, dependsOn: [files] },
        );

        this.roleName = role.name;
        this.mappingName = mapping.name;
        this.tokenPolicies = pulumi.output(policyNames);
        this.certSerial = cert.serialNumber;
        this.certExpiration = cert.expiration;
        this.certRenewPending = cert.renewPending.apply((p) => p === true);
        this.certPem = cert.certificate;
        this.filesWritten = files;
        this.replacedCertSerial = files.stdout.apply((out) => /^replaced_agent_cert_serial=([0-9A-Fa-f]{1,64})$/m.exec(out ?? "")?.[1] ?? "");
        this.registerOutputs({
            roleName: this.roleName,
            mappingName: this.mappingName,
            tokenPolicies: this.tokenPolicies,
            certSerial: this.certSerial,
            certExpiration: this.certExpiration,
        });
    }
}
