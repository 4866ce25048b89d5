// One app's whole rotation: agent identity, then the app leaf, then verification.
import * as pulumi from "@pulumi/pulumi";
import type { VaultConnection } from "../providers/connection";
import { RotationCheck, type ServeTarget } from "../providers/rotationCheck";
import { VerificationCheck } from "../providers/verificationCheck";
import { VaultTakeover, type TakenOverObject } from "../providers/vaultTakeover";
import { AgentIdentity, agentRoleInput, mappingVaultParams } from "./agentIdentity";
import { AppLeaf, leafRoleInput } from "./appLeaf";
import { restrictedRoleVaultParams } from "./pkiRole";
import { renderIssuePolicy, renderKvPolicy, renderMarkerPolicy } from "./renderers/policies";
import { hostCommand, type HostTarget } from "./hostCommand";
import { renderRecordVerificationScript, renderVerifyScript } from "./renderers/scripts";
import { expectedTokenPolicies, vaultNames } from "../lib/naming";
import { sha256Hex } from "../lib/digest";


export interface AppRotationArgs {
    /** App name (`[a-z][a-z0-9-]*`), unique in the stack. */
    app: string;
    /** The stack's `namePrefix` (sharding), in every Vault object name; undefined for none. */
    namePrefix?: string;
    /** Unix user owning the app's files and its `vault-agent-<app>` user service. */
    user: string;
    /** The app user's home directory (absolute). */
    home: string;
    /** Where the app's host commands run. */
    host: HostTarget;
    /** The rotation epoch; changing it replaces every credential of the app. */
    epoch: pulumi.Input<string>;
    /** Vault coordinates for dynamic providers (no secrets). */
    connection: VaultConnection;
    /** Vault address as the agent on the host reaches it. */
    agentVaultAddress: string;
    /** PEM bundle that verifies Vault's listener (written to the host as ca.pem). */
    listenerCaPem: string;
    /** PKI mount issuing agent and leaf certs. */
    pkiMount: string;
    /** Common name of the intermediate that must issue the leaf. */
    issuerCommonName: string;
    /** Cert auth mount path (Output of the stack's auth method). */
    certAuthPath: pulumi.Input<string>;
    /** Cert auth mount path as configured (for the agent config text). */
    certAuthPathName: string;
    /** Resources every mapping must come after (auth method, shared policies). */
    stackReady: pulumi.Resource[];
    agent: {
        /** Agent certificate CN. */
        commonName: string;
        /** Agent certificate TTL, seconds. */
        ttlSeconds: number;
        /** Renew the agent cert on any run when fewer seconds than this remain. */
        renewBeforeSeconds: number;
        /** Attach `<app>-marker`. */
        markerPolicy: boolean;
        /** Attach `debug-policy` (off in strict mode). */
        debugPolicy: boolean;
        /** Token TTL of agent logins, seconds. */
        tokenTtlSeconds: number;
    };
    leaf: {
        commonName: string;
        altNames: string[];
        allowedDomains: string[];
        /** TTL as configured, e.g. `720h`. */
        ttl: string;
        ttlSeconds: number;
    };
    /** KV access, or undefined when the app has none. */
    kv?: { mount: string; version: pulumi.Input<"1" | "2">; seed: boolean; seedData?: pulumi.Input<Record<string, string>> };
    reload: { label: string; proxy?: string; signal: string };
    /** Seconds to wait for the agent to render a new fullchain. */
    waitSeconds: number;
    /** After the checks pass, revoke the leaf this rotation replaced (an incident). */
    revokePreviousLeaf?: boolean;
    /** The checklist fails when the new leaf has less validity left than this. */
    leafMinRemainingSeconds: number;
    /** Where the app serves its leaf, and how a client reaches it through the edge proxy; absent: not checked. */
    serve?: ServeTarget;
    /** The edge proxy's trust-bundle step: a check through the proxy comes after it. */
    edgeReady?: pulumi.Resource;
    /** The node_exporter textfile on the host (written by the post-hook and each verification). */
    metricsTextfile: string;
    verification: {
        /** This run's verification window (config.verificationWindow): a new one re-verifies the app. */
        window: string;
        /** The agent cert must have this much validity left at a verification: until after the next run. */
        agentMinRemainingSeconds: number;
    };
}

/** The facts of the last verification that passed (stack output): public facts only. */
export interface VerificationReport {
    window: string;
    /** ISO 8601: when every item passed (host, Vault, served certificate). */
    verifiedAt: string;
    agentCertSerial: string;
    agentCertNotAfter: string;
    agentCertDaysLeft: number;
    leafSerial: string;
    leafNotAfter: string;
    leafDaysLeft: number;
    servedSerial: string;
    servedVia: string;
    serverVersion: string;
    agentVersion: string;
    versionWarning: string;
}

/** The per-app rotation report exported as a stack output: public facts only. */
export interface RotationReport {
    agentRole: string;
    leafRole: string;
    mapping: string;
    tokenPolicies: string[];
    agentCertSerial: string;
    agentCertNotAfter: string;
    leafSerial: string;
    previousLeafSerial: string;
    /** A hand-issued agent cert the host held before (the runbook's), revoked by this run ("" when none). */
    revokedHandIssuedAgentCert: string;
    leafNotAfter: string;
    leafDaysLeft: number;
    kvStatus: string;
    serverVersion: string;
    agentVersion: string;
    versionWarning: string;
    /** Serial a TLS handshake to the app's endpoint got after the rotation ("" when not checked). */
    servedSerial: string;
    /** How serving was checked (direct endpoint, through the edge proxy), or that it was not. */
    servedVia: string;
    /** When the last rotation's check ran (ISO 8601): the facts above are as of then. */
    checkedAt: string;
    /** The leaf's name: the SNI a client (and `npm run status`) asks for. */
    leafCommonName: string;
    /** `host:port` where the app serves the leaf; "" when serving is not checked. */
    serveEndpoint: string;
    /** The last verification between rotations that passed, and when. */
    verification: VerificationReport;
}

export class AppRotation extends pulumi.ComponentResource {
    public readonly agentRoleName: pulumi.Output<string>;
    public readonly leafRoleName: pulumi.Output<string>;
    public readonly mappingName: pulumi.Output<string>;
    /** Policies on the mapping (Vault adds `default` at login). */
    public readonly tokenPolicies: pulumi.Output<string[]>;
    public readonly agentCertSerial: pulumi.Output<string>;
    /** Agent cert expiry, ISO 8601. */
    public readonly agentCertNotAfter: pulumi.Output<string>;
    /** Why a run would touch this app's agent cert besides an epoch change: readable in `pulumi preview`. */
    public readonly renewal: pulumi.Output<{ agentCertNotAfter: string; renewalDue: boolean; why: string }>;
    /** Host facts read after the rotation (public certificate text, service state, agent version). */
    public readonly hostState: pulumi.Output<string>;
    /** The verified facts of this rotation (stack output). */
    public readonly report: pulumi.Output<RotationReport>;
    /** What the first write took over in objects that already existed (one line each; [] for none). */
    public readonly takeoverNotes: pulumi.Output<string[]>;
    /** The last verification that passed (recorded on the host too). */
    public readonly verification: pulumi.Output<VerificationReport>;
    public readonly identity: AgentIdentity;
    public readonly leaf: AppLeaf;

    constructor(name: string, args: AppRotationArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vault-rotation:components:AppRotation", name, {}, opts);
        const names = vaultNames(args.app, args.namePrefix);
        const identityArgs = {
            app: args.app,
            namePrefix: args.namePrefix,
            pkiMount: args.pkiMount,
            commonName: args.agent.commonName,
            ttlSeconds: args.agent.ttlSeconds,
            markerPolicy: args.agent.markerPolicy,
            debugPolicy: args.agent.debugPolicy,
            // The leaf half owns the KV policy; the mapping only names it.
            extraPolicies: args.kv ? [names.kvPolicy] : [],
            tokenTtlSeconds: args.agent.tokenTtlSeconds,
        };

        // A Vault the runbook configured already holds these objects: say, per object,
        // what the first write changes (the writes themselves are upserts), before it.
        const kv = args.kv;
        const objects: pulumi.Input<TakenOverObject>[] = [
            { kind: "pki-role", mount: args.pkiMount, name: names.agentRole, want: restrictedRoleVaultParams(agentRoleInput(identityArgs)) },
            { kind: "pki-role", mount: args.pkiMount, name: names.leafRole, want: restrictedRoleVaultParams(leafRoleInput({ ...args, ...args.leaf })) },
            { kind: "policy", name: names.issuePolicy, policy: renderIssuePolicy(args.pkiMount, names.leafRole) },
            ...(args.agent.markerPolicy ? [{ kind: "policy" as const, name: names.markerPolicy, policy: renderMarkerPolicy(args.app) }] : []),
            ...(kv ? [pulumi.output(kv.version).apply((v): TakenOverObject => ({ kind: "policy", name: names.kvPolicy, policy: renderKvPolicy(kv.mount, names.qualified, v) }))] : []),
            { kind: "cert-mapping", authPath: args.certAuthPathName, name: names.mapping, want: mappingVaultParams(identityArgs), issuingCaFrom: args.pkiMount },
        ];
        const takeover = new VaultTakeover(`${name}-takeover`, { connection: args.connection, objects }, { parent: this, dependsOn: args.stackReady });
        this.takeoverNotes = takeover.notes.apply((n) => n ?? []);

        this.identity = new AgentIdentity(
            `${name}-agent`,
            {
                app: args.app,
                namePrefix: args.namePrefix,
                user: args.user,
                home: args.home,
                host: args.host,
                epoch: args.epoch,
                pkiMount: args.pkiMount,
                certAuthPath: args.certAuthPath,
                commonName: args.agent.commonName,
                ttlSeconds: args.agent.ttlSeconds,
                renewBeforeSeconds: args.agent.renewBeforeSeconds,
                markerPolicy: args.agent.markerPolicy,
                debugPolicy: args.agent.debugPolicy,
                extraPolicies: identityArgs.extraPolicies,
                listenerCaPem: args.listenerCaPem,
                connection: args.connection,
                tokenTtlSeconds: args.agent.tokenTtlSeconds,
                takeover,
            },
            { parent: this, dependsOn: args.stackReady },
        );

        this.leaf = new AppLeaf(
            `${name}-leaf`,
            {
                app: args.app,
                namePrefix: args.namePrefix,
                user: args.user,
                home: args.home,
                host: args.host,
                epoch: args.epoch,
                agentCertSerial: this.identity.certSerial,
                tokenPolicies: this.identity.tokenPolicies,
                agentFilesWritten: this.identity.filesWritten,
                pkiMount: args.pkiMount,
                certAuthPath: args.certAuthPathName,
                agentVaultAddress: args.agentVaultAddress,
                commonName: args.leaf.commonName,
                altNames: args.leaf.altNames,
                allowedDomains: args.leaf.allowedDomains,
                ttl: args.leaf.ttl,
                ttlSeconds: args.leaf.ttlSeconds,
                kv: args.kv,
                connection: args.connection,
                reloadLabel: args.reload.label,
                reloadProxy: args.reload.proxy,
                reloadSignal: args.reload.signal,
                waitSeconds: args.waitSeconds,
                metricsTextfile: args.metricsTextfile,
                takeover,
            },
            { parent: this },
        );

        // Verification runs after the last host step and is replaced with it: a
        // failed item fails the update with a line that says what to look at.
        // The same resource compares agent and server versions (a warning only):
        // two resources that were always replaced together are one. Cert login is
        // verified from the host's report, so no copy of the agent key goes here.
        const check = new RotationCheck(
            `${name}-check`,
            {
                connection: args.connection,
                app: args.app,
                certAuthPath: args.certAuthPath,
                mappingName: this.identity.mappingName,
                agentCertPem: this.identity.certPem,
                expectedPolicies: this.identity.tokenPolicies.apply(expectedTokenPolicies),
                hostState: this.leaf.hostState,
                leafCommonName: args.leaf.commonName,
                allowedDomains: args.leaf.allowedDomains,
                issuerCommonName: args.issuerCommonName,
                pkiMount: args.pkiMount,
                minRemainingSeconds: args.leafMinRemainingSeconds,
                serve: args.serve,
                ...(args.revokePreviousLeaf ? { revokePreviousLeaf: true } : {}),
                replacedAgentCertSerial: this.identity.replacedCertSerial,
            },
            { parent: this, dependsOn: [this.leaf.rotated, ...this.leaf.policies, ...(args.edgeReady ? [args.edgeReady] : [])] },
        );
        // A version mismatch between agent and server is a warning, never a failure.
        check.versionWarning.apply((w) => {
            if (w) void pulumi.log.warn(w, this);
        });
        // A hand-issued agent cert the host held that could not be revoked (not this PKI's, another name).
        check.replacedAgentCertNote.apply((note) => {
            if (note) void pulumi.log.warn(note, this);
        });

        // Between rotations: once per verification window, read the host (read-only: nothing restarted or reloaded), check it on
        // the runner against Vault and what clients are served, then record the pass on
        // the host. A failed host item fails the verify step and a failed runner item the
        // check; neither is kept in state, so the next run reads and checks again.
        const expectedPolicies = this.identity.tokenPolicies.apply(expectedTokenPolicies);
        const expectations = {
            address: args.connection.address,
            leafCommonName: args.leaf.commonName,
            allowedDomains: args.leaf.allowedDomains,
            issuerCommonName: args.issuerCommonName,
            pkiMount: args.pkiMount,
            minRemainingSeconds: args.leafMinRemainingSeconds,
            serve: args.serve ?? null,
        };
        const hostUser = { app: args.app, user: args.user, home: args.home, hostPath: args.host.path, timeoutSeconds: args.host.stepTimeoutSeconds };
        const verify = hostCommand(
            `${name}-verify`,
            args.host,
            {
                script: expectedPolicies.apply((policies) =>
                    renderVerifyScript({
                        ...hostUser,
                        service: names.service,
                        login: { vaultAddress: args.agentVaultAddress, certAuthPath: args.certAuthPathName, mapping: names.mapping },
                        expectedPolicies: policies,
                        leafMinRemainingSeconds: args.leafMinRemainingSeconds,
                        agentMinRemainingSeconds: args.verification.agentMinRemainingSeconds,
                        textfile: args.metricsTextfile,
                    }),
                ),
                // The window and the check's expectations: a rotation or renewal is checked by its own
                // RotationCheck, and the next window verifies it with the rest (re-verifying it here would
                // double a rotation's steps); a changed expectation reads the host again before it is checked.
                triggers: [args.verification.window, expectedPolicies.apply((policies) => sha256Hex(JSON.stringify({ ...expectations, policies })))],
            },
            { parent: this, dependsOn: [check] },
        );
        const verification = new VerificationCheck(
            `${name}-verification`,
            {
                connection: args.connection,
                app: args.app,
                window: args.verification.window,
                certAuthPath: args.certAuthPath,
                mappingName: this.identity.mappingName,
                expectedPolicies,
                hostState: verify.stdout,
                leafCommonName: args.leaf.commonName,
                allowedDomains: args.leaf.allowedDomains,
                issuerCommonName: args.issuerCommonName,
                pkiMount: args.pkiMount,
                minRemainingSeconds: args.leafMinRemainingSeconds,
                expectedAgentSerial: this.identity.certSerial,
                rotationLeafSerial: check.leafSerial,
                serve: args.serve,
            },
            { parent: this, dependsOn: [verify] },
        );
        verification.versionWarning.apply((w) => {
            if (w) void pulumi.log.warn(w, this);
        });
        const recorded = hostCommand(
            `${name}-verified`,
            args.host,
            { script: renderRecordVerificationScript({ ...hostUser, textfile: args.metricsTextfile }), triggers: [verification.verifiedAt] },
            { parent: this, dependsOn: [verification] },
        );
        const verificationFacts: pulumi.Input<{ [K in keyof VerificationReport]: pulumi.Input<VerificationReport[K]> }> = {
            window: args.verification.window,
            // Reported once the pass is recorded on the host too.
            verifiedAt: pulumi.all([verification.verifiedAt, recorded.id]).apply(([at]) => at),
            agentCertSerial: verification.agentCertSerial,
            agentCertNotAfter: verification.agentCertNotAfter,
            agentCertDaysLeft: verification.agentCertDaysLeft,
            leafSerial: verification.leafSerial,
            leafNotAfter: verification.leafNotAfter,
            leafDaysLeft: verification.leafDaysLeft,
            servedSerial: verification.servedSerial,
            servedVia: verification.servedVia,
            serverVersion: verification.serverVersion,
            agentVersion: verification.agentVersion,
            versionWarning: verification.versionWarning,
        };
        this.verification = pulumi.output(verificationFacts) as pulumi.Output<VerificationReport>;

        this.agentRoleName = this.identity.roleName;
        this.leafRoleName = this.leaf.roleName;
        this.mappingName = this.identity.mappingName;
        this.tokenPolicies = this.identity.tokenPolicies;
        this.agentCertSerial = this.identity.certSerial;
        this.agentCertNotAfter = this.identity.certExpiration.apply((s) => new Date(s * 1000).toISOString());
        this.hostState = this.leaf.hostState;
        this.renewal = pulumi.all([this.agentCertNotAfter, this.identity.certRenewPending]).apply(([notAfter, due]) => ({
            agentCertNotAfter: notAfter,
            renewalDue: due,
            why: due
                ? `agent cert expires ${notAfter}, inside the renewal window (${args.agent.renewBeforeSeconds}s): this run renews it`
                : `agent cert valid until ${notAfter}; renewed once less than ${args.agent.renewBeforeSeconds}s remain`,
        }));
        const report: pulumi.Input<{ [K in keyof RotationReport]: pulumi.Input<RotationReport[K]> }> = {
            agentRole: this.agentRoleName,
            leafRole: this.leafRoleName,
            mapping: this.mappingName,
            tokenPolicies: this.tokenPolicies,
            agentCertSerial: this.agentCertSerial,
            agentCertNotAfter: this.agentCertNotAfter,
            leafSerial: check.leafSerial,
            previousLeafSerial: check.previousLeafSerial,
            revokedHandIssuedAgentCert: check.revokedReplacedAgentCert.apply((s) => s ?? ""),
            leafNotAfter: check.leafNotAfter,
            leafDaysLeft: check.leafDaysLeft,
            kvStatus: this.leaf.kvStatus,
            serverVersion: check.serverVersion,
            agentVersion: check.agentVersion,
            versionWarning: check.versionWarning,
            servedSerial: check.servedSerial,
            servedVia: check.servedVia,
            checkedAt: check.checkedAt,
            leafCommonName: args.leaf.commonName,
            serveEndpoint: args.serve?.endpoint ?? "",
            verification: this.verification,
        };
        this.report = pulumi.output(report) as pulumi.Output<RotationReport>;
        this.registerOutputs({
            agentRoleName: this.agentRoleName,
            leafRoleName: this.leafRoleName,
            mappingName: this.mappingName,
            tokenPolicies: this.tokenPolicies,
            agentCertSerial: this.agentCertSerial,
            agentCertNotAfter: this.agentCertNotAfter,
        });
    }
}
