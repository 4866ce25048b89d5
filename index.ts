// Wiring only: read and validate the stack config once, build the stack-level
// Vault objects and one AppRotation per app, export what operators read.
import * as fs from "fs";
import * as pulumi from "@pulumi/pulumi";
import {
    appEpoch,
    durationSeconds,
    readRawStackInputs,
    renewBeforeSeconds,
    resolveEpoch,
    runMarginSeconds,
    stepTimeoutSeconds,
    validateStackInputs,
    verificationWindow,
} from "./config";
import { defaultMetricsTextfile } from "./lib/naming";
import { AppRotation, AppRotationArgs } from "./components/appRotation";
import type { HostTarget } from "./components/hostCommand";
import { DEFAULT_HOST_PATH } from "./components/renderers/scripts";
import { StackBase } from "./components/stackBase";
import { EdgeTrust } from "./components/edgeTrust";
import type { VaultConnection } from "./providers/connection";
import { DestroyGuard } from "./providers/destroyGuard";
import { skipPromiseDebugStacks, trimResourceStackTraces } from "./components/stackTraces";

// Before any resource: keep only this program's frames of each resource's stack in the state,
// and do not format a stack for every promise the SDK makes (half the evaluation's CPU).
trimResourceStackTraces();
skipPromiseDebugStacks();

// Throws ConfigError (every problem, each naming its key) before any resource exists.
const { config, listenerCaPem } = validateStackInputs(readRawStackInputs(), (path) => fs.readFileSync(path, "utf8"));
const own = new pulumi.Config("vault-rotation");
if (process.env.VAULT_ROTATION_SAME_USER_REHEARSAL === "1") {
    void pulumi.log.warn("VAULT_ROTATION_SAME_USER_REHEARSAL=1: apps may share a Unix user (the non-root rehearsal only; never set it for a real stack)");
}
const runStartedAt = new Date();
const decision = resolveEpoch(config.rotation, runStartedAt);
const verifyWindow = verificationWindow(config.rotation, runStartedAt);
const runIntervalSeconds = durationSeconds(config.rotation.runInterval);
const marginSeconds = runMarginSeconds(runIntervalSeconds);

// One Vault identity per run: the vault provider plugin and the dynamic providers
// both take VAULT_TOKEN (else ~/.vault-token) from the Pulumi process, which in a
// Deployment the stack's ESC environment exports (deploy/README.md); no token is
// an input of any resource. The CA file is an input only when the stack names it:
// VAULT_CACERT (ESC's per-run temp file) is read when a provider runs.
const connection: VaultConnection = {
    address: config.vault.address,
    ...(config.vault.caCertFile !== undefined ? { caCertFile: config.vault.caCertFile } : {}),
};
const anyKv = config.apps.some((a) => a.kv.access);

const base = new StackBase("vault-rotation", {
    connection,
    certAuthPath: config.vault.certAuthPath,
    debugPolicy: config.apps.some((a) => a.agent.debugPolicy),
    namePrefix: config.namePrefix,
    kvMount: anyKv ? config.vault.kvMount : undefined,
});

const sshKey = own.getSecret("sshPrivateKey");
const stepTimeout = stepTimeoutSeconds(config.rotation);

/**
 * Where a host's commands run: the runner itself, or over SSH with the stack's
 * key and the host's pinned key, logged in as `user` itself (no sudo).
 */
function hostTarget(host: (typeof config.apps)[number]["host"], user: string): HostTarget {
    return "ssh" in host
        ? { kind: "ssh", host: host.ssh.host, port: host.ssh.port, user, hostKey: host.ssh.hostKey, privateKey: sshKey!, path: host.path ?? DEFAULT_HOST_PATH, stepTimeoutSeconds: stepTimeout }
        : { kind: "local", path: host.path ?? DEFAULT_HOST_PATH, stepTimeoutSeconds: stepTimeout };
}

// The edge proxy's upstream trust bundle follows the PKI's issuing chain (runbook Part 4).
const edge = config.edge;
const edgeTrust = edge
    ? new EdgeTrust(
          "edge",
          {
              connection,
              pkiMount: config.vault.pkiMount,
              user: edge.user,
              home: edge.home,
              host: hostTarget(edge.host, edge.user),
              bundle: edge.bundle,
              container: edge.reload.replace(/^podman:/, ""),
              trustReload: edge.trustReload,
              signal: edge.signal,
          },
      )
    : undefined;
const seedData = own.getSecretObject<Record<string, Record<string, string>>>("kvSeedData");

// Each app's epoch: the stack's, joined by the app's own while `apps[i].epoch` is set.
const appEpochs = config.apps.map((app) => appEpoch(decision.epoch, app));

const rotations = config.apps.map((app, i) => {
    const host = hostTarget(app.host, app.user);
    const args: AppRotationArgs = {
        app: app.name,
        namePrefix: config.namePrefix,
        user: app.user,
        home: app.home,
        host,
        epoch: appEpochs[i],
        connection,
        agentVaultAddress: config.vault.agentAddress ?? config.vault.address,
        listenerCaPem,
        pkiMount: config.vault.pkiMount,
        issuerCommonName: config.vault.issuerCommonName,
        certAuthPath: base.certAuthPath,
        certAuthPathName: config.vault.certAuthPath,
        stackReady: base.ready,
        agent: {
            commonName: app.agent.commonName,
            ttlSeconds: durationSeconds(app.agent.ttl),
            renewBeforeSeconds: renewBeforeSeconds(config.rotation, app),
            markerPolicy: app.agent.markerPolicy,
            debugPolicy: app.agent.debugPolicy,
            tokenTtlSeconds: 3600,
        },
        leaf: {
            commonName: app.leaf.commonName,
            altNames: app.leaf.altNames,
            allowedDomains: app.leaf.allowedDomains,
            ttl: app.leaf.ttl,
            ttlSeconds: durationSeconds(app.leaf.ttl),
        },
        kv: app.kv.access
            ? {
                  mount: config.vault.kvMount,
                  version: base.kvVersion!,
                  seed: app.kv.seed,
                  seedData: app.kv.seed ? seedData!.apply((d) => d[app.name]) : undefined,
              }
            : undefined,
        reload: { label: app.reload.label, proxy: app.reload.proxy, signal: app.reload.signal },
        waitSeconds: config.rotation.waitSeconds,
        // An app's own epoch is an emergency (a compromised app): its rotations also
        // revoke the leaf they replace, once the new one is served.
        revokePreviousLeaf: config.rotation.revokePreviousLeaf === true || app.epoch !== undefined,
        leafMinRemainingSeconds: durationSeconds(config.rotation.leafMinRemaining),
        serve: app.serve
            ? {
                  endpoint: app.serve.endpoint,
                  ...(app.serve.path !== undefined ? { path: app.serve.path } : {}),
                  edge: edge ? { listen: edge.listen, serverName: edge.serverName, host: app.serve.edgeHost ?? app.leaf.commonName } : undefined,
              }
            : undefined,
        edgeReady: app.serve && edgeTrust ? edgeTrust.bundleWritten : undefined,
        metricsTextfile: app.metricsTextfile ?? defaultMetricsTextfile(app.home, app.name),
        // The next run may be runInterval away and somewhat late: the agent cert must outlive it.
        verification: { window: verifyWindow.window, agentMinRemainingSeconds: runIntervalSeconds + marginSeconds },
    };
    return new AppRotation(app.name, args);
});

// Last in the program, depending on everything above: `pulumi destroy` reaches it
// first and stops on its protection before any agent loses its mapping or cert.
new DestroyGuard(
    "vault-rotation-destroy-guard",
    { guards: `every agent's login on auth/${config.vault.certAuthPath}: pulumi state unprotect --all, then destroy, to retire on purpose` },
    { dependsOn: [base, ...rotations, ...(edgeTrust ? [edgeTrust] : [])] },
);

/**
 * Why this run would (or would not) rotate, readable in `pulumi preview`: the
 * epoch and where it came from (a changed epoch shows as the agent keys'
 * replacement in the preview), and per app whether its agent cert is due for
 * renewal.
 */
export const rotationPlan = {
    epoch: decision.epoch,
    epochSource: decision.source,
    bucketStart: decision.bucketStart,
    nextScheduledRotation: decision.nextRotation,
    apps: Object.fromEntries(
        config.apps.map((app, i) => [
            app.name,
            rotations[i].renewal.apply((r) => ({ ...r, epoch: appEpochs[i], ...(app.epoch !== undefined ? { appEpoch: app.epoch } : {}) })),
        ]),
    ),
};

/**
 * How often apps are verified between rotations, readable in `pulumi preview`:
 * each app's verify step takes `window` as a trigger, so a run in a later window
 * than an app's last verification shows that step replaced (old window => new),
 * and a run in the same window shows nothing. The report's `verification`
 * says when each app last passed.
 */
export const verificationPlan = {
    every: verifyWindow.every,
    everySeconds: verifyWindow.everySeconds,
    window: verifyWindow.window,
    nextWindow: verifyWindow.next,
    /** Slack for a late run: alert when a verification is older than everySeconds (or runInterval) + this. */
    marginSeconds,
    runIntervalSeconds,
};

/** Where a read-only look (npm run status) asks Vault: no token is needed for what it reads. */
export const vaultTarget = { address: config.vault.address, pkiMount: config.vault.pkiMount, certAuthPath: config.vault.certAuthPath };

/**
 * The first run against a Vault the runbook configured: whether the cert auth
 * method was adopted, and the mappings it held then that this stack does not
 * manage (old names: remove them by hand, docs/OPERATIONS.md "Adopting a
 * hand-run setup"), and what the first write changed in each object that
 * existed (also logged, once, by the update that wrote it).
 */
export const adoption = {
    certAuthMethod: base.certAuthAdopted.apply((adopted) => (adopted ? `adopted auth/${config.vault.certAuthPath}/ (it existed)` : `enabled auth/${config.vault.certAuthPath}/`)),
    mappingsNotManaged: pulumi
        .all([base.preexistingMappings, pulumi.all(rotations.map((r) => r.mappingName))])
        .apply(([before, managed]) => (before ?? []).filter((m) => !managed.includes(m))),
    /** The run that first wrote each object logged these; they stay here. */
    takeoverNotes: pulumi.all([base.takeoverNotes, ...rotations.map((r) => r.takeoverNotes)]).apply((lists) => lists.flat()),
};

/** One report per app; never a key. */
export const apps = Object.fromEntries(config.apps.map((app, i) => [app.name, rotations[i].report]));
