// Wiring only: read and validate the stack config once, build the stack-level
// Vault objects and one AppRotation per app, export what operators read.
import * as fs from "fs";
import * as pulumi from "@pulumi/pulumi";
import * as vault from "@pulumi/vault";
import { durationSeconds, readRawStackInputs, renewBeforeSeconds, resolveEpoch, stepTimeoutSeconds, validateStackInputs } from "./config";
import { AppRotation, AppRotationArgs } from "./components/appRotation";
import type { HostTarget } from "./components/hostCommand";
import { DEFAULT_HOST_PATH } from "./components/renderers/scripts";
import { StackBase } from "./components/stackBase";
import { EdgeTrust } from "./components/edgeTrust";
import { readOidcToken, VaultConnection } from "./providers/connection";

// Throws ConfigError (every problem, each naming its key) before any resource exists.
const { config, listenerCaPem } = validateStackInputs(readRawStackInputs(), (path) => fs.readFileSync(path, "utf8"));
const own = new pulumi.Config("vault-rotation");
if (process.env.VAULT_ROTATION_SAME_USER_REHEARSAL === "1") {
    void pulumi.log.warn("VAULT_ROTATION_SAME_USER_REHEARSAL=1: apps may share a Unix user (the non-root rehearsal only; never set it for a real stack)");
}
const decision = resolveEpoch(config.rotation, new Date());

const connection: VaultConnection = { address: config.vault.address, caCertFile: config.vault.caCertFile, jwtAuth: config.vault.jwtAuth };
const anyKv = config.apps.some((a) => a.kv.access);

// Unattended runs (Pulumi Deployments) log in with the Deployment's OIDC token
// through Vault's JWT auth: no long-lived token is stored anywhere. Without an
// OIDC token (an operator's shell), the same provider falls back to VAULT_TOKEN.
// The login token is used directly (no child token): its TTL is the JWT role's,
// and the deployer needs no right to create tokens.
const jwtAuth = config.vault.jwtAuth;
const oidcToken = jwtAuth ? readOidcToken() : undefined;
const vaultProvider = jwtAuth
    ? new vault.Provider("vault-jwt", {
          address: config.vault.address,
          caCertFile: config.vault.caCertFile,
          skipChildToken: true,
          authLoginJwt: oidcToken ? { mount: jwtAuth.mount, role: jwtAuth.role, jwt: pulumi.secret(oidcToken) } : undefined,
      })
    : undefined;
const providers = vaultProvider ? { providers: [vaultProvider] } : {};

const base = new StackBase(
    "vault-rotation",
    {
        certAuthPath: config.vault.certAuthPath,
        debugPolicy: config.apps.some((a) => a.agent.debugPolicy),
        namePrefix: config.namePrefix,
        kv: anyKv ? { connection, mount: config.vault.kvMount } : undefined,
    },
    providers,
);

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
          providers,
      )
    : undefined;
const seedData = own.getSecretObject<Record<string, Record<string, string>>>("kvSeedData");

const rotations = config.apps.map((app) => {
    const host = hostTarget(app.host, app.user);
    const args: AppRotationArgs = {
        app: app.name,
        namePrefix: config.namePrefix,
        user: app.user,
        home: app.home,
        host,
        epoch: decision.epoch,
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
        revokePreviousLeaf: config.rotation.revokePreviousLeaf,
        leafMinRemainingSeconds: durationSeconds(config.rotation.leafMinRemaining),
        serve: app.serve
            ? {
                  endpoint: app.serve.endpoint,
                  ...(app.serve.path !== undefined ? { path: app.serve.path } : {}),
                  edge: edge ? { listen: edge.listen, serverName: edge.serverName, host: app.serve.edgeHost ?? app.leaf.commonName } : undefined,
              }
            : undefined,
        edgeReady: app.serve && edgeTrust ? edgeTrust.bundleWritten : undefined,
    };
    return new AppRotation(app.name, args, providers);
});

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
    apps: Object.fromEntries(config.apps.map((app, i) => [app.name, rotations[i].renewal])),
};

/** One report per app; never a key. */
export const apps = Object.fromEntries(config.apps.map((app, i) => [app.name, rotations[i].report]));
