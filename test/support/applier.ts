// Performs a program evaluation for real: every resource the program declares is
// created, updated, replaced or left alone like the Pulumi engine would, against
// a real Vault and this machine. Used by the real-Vault tests and the rehearsal.
//
// Why not the Pulumi CLI: it and its provider plugins take long builds from
// sources a fresh machine lacks (the engine tier runs them where they are). The
// program still runs unchanged through the SDK; this module stands in for the
// engine and the providers:
//   - Vault resources go through Vault's HTTP API, with `@pulumi/vault` input
//     names translated to Vault's parameters;
//   - command.local runs its `create` script with its stdin and environment;
//   - command.remote runs its `create` script over SSH with the OpenSSH client
//     (sshExec.ts): one session per command, stdin piped, the pinned
//     `connection.hostKey` enforced, nothing of the local environment forwarded.
//     unlike the provider it does not retry a failed dial (10 tries by default);
//   - dynamic resources call this repo's provider objects directly.
// State (inputs and outputs per URN) is kept between runs, so a second run with
// the same inputs changes nothing and a new epoch replaces what it triggers.
// Where the engine's own rules matter, they are modelled: dependents replaced
// through ForceNew inputs (FORCE_NEW_FROM_OUTPUTS) and `--continue-on-error`.
// The engine tier (test/engine/) compares this applier's step lists with the
// real engine's for the same stack, so a drift between the two fails a test.
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import type * as pulumi from "@pulumi/pulumi";
import { certRevocationProvider } from "../../providers/certRevocation";
import { kvMountProvider } from "../../providers/kvMount";
import { kvSeedProvider } from "../../providers/kvSeed";
import { rotationCheckProvider } from "../../providers/rotationCheck";
import { issuingChainProvider } from "../../providers/issuingChain";
import { certAuthMountProvider } from "../../providers/certAuthMount";
import { vaultTakeoverProvider } from "../../providers/vaultTakeover";
import { destroyGuardProvider } from "../../providers/destroyGuard";
import { verificationCheckProvider } from "../../providers/verificationCheck";
import { evaluateProgram, Evaluation, MockResourceArgs, Registration } from "./harness";
import { runningAsRoot } from "./hostUsers";
import { RemoteConnection, runRemote } from "./sshExec";
import { vaultRequest, VaultConnection as TestVault } from "./vaultAdmin";

/** One resource as the applier last left it. */
export interface StateEntry {
    type: string;
    name: string;
    id: string;
    inputs: Record<string, unknown>;
    outputs: Record<string, unknown>;
    trigger: unknown;
    /** Inputs and outputs that are secrets (secret inputs, additionalSecretOutputs): redacted when state is saved. */
    secrets?: string[];
}

export interface ApplierState {
    resources: Record<string, StateEntry>;
}

export type Action = "create" | "update" | "replace" | "same" | "delete";

export interface AppliedStep {
    urn: string;
    type: string;
    name: string;
    action: Action;
}

export interface ApplyResult {
    steps: AppliedStep[];
    evaluation: Evaluation;
    state: ApplierState;
}

export interface ApplyOptions {
    /** Flat Pulumi config for the stack. */
    config: Record<string, string>;
    secretKeys?: string[];
    stack?: string;
    vault: TestVault;
    /** Previous state (from the last apply), or undefined for a new stack. */
    state?: ApplierState;
    /** Progress lines (never secrets). */
    log?: (line: string) => void;
    /** Program to run (defaults to the repo's index.ts). */
    programPath?: string;
    /** As `pulumi up --continue-on-error`: a failed step stops only what depends on it (then ApplyFailure). */
    continueOnError?: boolean;
}

const DYNAMIC_PROVIDERS: Record<string, pulumi.dynamic.ResourceProvider> = {
    "pulumi-nodejs:dynamic/vault-rotation:CertRevocation": certRevocationProvider,
    "pulumi-nodejs:dynamic/vault-rotation:KvMount": kvMountProvider,
    "pulumi-nodejs:dynamic/vault-rotation:KvSeed": kvSeedProvider,
    "pulumi-nodejs:dynamic/vault-rotation:RotationCheck": rotationCheckProvider,
    "pulumi-nodejs:dynamic/vault-rotation:IssuingChain": issuingChainProvider,
    "pulumi-nodejs:dynamic/vault-rotation:CertAuthMount": certAuthMountProvider,
    "pulumi-nodejs:dynamic/vault-rotation:VaultTakeover": vaultTakeoverProvider,
    "pulumi-nodejs:dynamic/vault-rotation:DestroyGuard": destroyGuardProvider,
    "pulumi-nodejs:dynamic/vault-rotation:VerificationCheck": verificationCheckProvider,
};

/** `allowBareDomains` -> `allow_bare_domains`, with the few names Vault spells differently. */
function vaultParam(name: string): string {
    const special: Record<string, string> = {
        keyUsages: "key_usage",
        extKeyUsages: "ext_key_usage",
        allowedCommonNames: "allowed_common_names",
        organizationUnit: "ou",
        organizations: "organization",
    };
    return special[name] ?? name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function vaultBody(inputs: Record<string, unknown>, skip: string[]): Record<string, unknown> {
    const body: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(inputs)) {
        if (skip.includes(k) || v === undefined || k === "__provider") continue;
        body[vaultParam(k)] = v;
    }
    return body;
}

function sameTrigger(a: unknown, b: unknown): boolean {
    return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

function comparable(inputs: Record<string, unknown>): string {
    const { __provider: _ignored, ...rest } = inputs;
    return JSON.stringify(rest);
}

/** A dynamic provider's own verdict from its diff, or undefined for a type without one. */
async function dynamicDiff(type: string, prior: StateEntry, inputs: Record<string, unknown>): Promise<Action | undefined> {
    const provider = DYNAMIC_PROVIDERS[type];
    if (!provider?.diff) return undefined;
    const d = await provider.diff(prior.id, prior.outputs, inputs);
    if ((d.replaces ?? []).length > 0) return "replace";
    return d.changes ? "update" : "same";
}

/**
 * Inputs the providers mark ForceNew (a change replaces the object) that the
 * program feeds from other resources' outputs. When such a source is replaced
 * delete-before-replace (the vault provider does so whenever the name stays,
 * e.g. the re-signed agent cert), the engine replaces its dependents through
 * those inputs too, even when the value turns out equal: the cert-auth
 * mapping's `certificate` (the agent cert's issuer) is the one this program has.
 */
const FORCE_NEW_FROM_OUTPUTS: Record<string, string[]> = {
    "vault:index/certAuthBackendRole:CertAuthBackendRole": ["certificate", "name", "backend"],
};

/** What a changed resource needs, following each provider's own replace rules. */
async function planChange(type: string, prior: StateEntry, inputs: Record<string, unknown>, trigger: unknown): Promise<"update" | "replace"> {
    if (!sameTrigger(prior.trigger, trigger)) return "replace";
    switch (type) {
        case "vault:pkiSecret/secretBackendSign:SecretBackendSign":
            return "replace";
        case "command:local:Command":
        case "command:remote:Command":
            return sameTrigger(prior.inputs.triggers, inputs.triggers) ? "update" : "replace";
        default: {
            // Changed inputs are at least an update, whatever the diff says about changes.
            if ((await dynamicDiff(type, prior, inputs)) === "replace") return "replace";
            return "update";
        }
    }
}

export class Applier {
    private readonly steps: AppliedStep[] = [];
    private readonly pendingDeletes: StateEntry[] = [];
    private readonly seen = new Set<string>();
    /** --continue-on-error: resources whose step failed, and those not performed because of them. */
    private readonly failed = new Set<string>();
    /** --continue-on-error: the steps that failed, in order. */
    readonly failures: { type: string; name: string; message: string }[] = [];
    /** Resources created or replaced in this run (a replaced agent cert: delete-before-replace). */
    private readonly renewed = new Set<string>();
    private readonly next: ApplierState;

    constructor(
        private readonly opts: ApplyOptions,
        private readonly previous: ApplierState,
    ) {
        this.next = { resources: {} };
    }

    private log(line: string): void {
        this.opts.log?.(line);
    }

    private async vault(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
        const r = await vaultRequest(this.opts.vault, method, path, body);
        if (r.status >= 300) throw new Error(`Vault ${method} ${path}: ${r.status}: ${r.text}`);
        return (r.body ?? {}) as Record<string, unknown>;
    }

    /** The mock's newResource: decide, perform, record. */
    readonly newResource = async (args: MockResourceArgs, registration: Registration): Promise<{ id: string; state: Record<string, unknown> }> => {
        const urn = registration.urn;
        if (registration.readId !== undefined) return this.read(args, registration);
        this.seen.add(urn);
        const inputs = registration.inputs;
        const trigger = registration.replacementTrigger;
        const prior = this.previous.resources[urn];
        // --continue-on-error: a resource that depends on a failed one is not performed and keeps its
        // recorded state, as the engine never registers it. (The program still needs its outputs to
        // go on: the recorded ones. Without any, this applier cannot continue: it fails there.)
        const dependsOnFailed = [...registration.dependencies, ...Object.values(registration.propertyDependencies).flat()].some((u) => this.failed.has(u));
        if (dependsOnFailed) {
            if (!prior) throw new Error(`${args.name}: not performed: a resource it depends on failed, and it has no recorded state to keep`);
            this.failed.add(urn);
            this.next.resources[urn] = prior;
            return { id: prior.id, state: prior.outputs };
        }
        const unknownForceNew = (FORCE_NEW_FROM_OUTPUTS[args.type] ?? []).some((k) => (registration.propertyDependencies[k] ?? []).some((u) => this.renewed.has(u)));
        let action: Action;
        if (!prior) action = "create";
        else if (unknownForceNew) action = "replace";
        // Unchanged inputs: the engine still asks a dynamic provider's diff, which may look at the
        // remote object (IssuingChain compares the live chain).
        else if (comparable(prior.inputs) === comparable(inputs) && sameTrigger(prior.trigger, trigger)) action = (await dynamicDiff(args.type, prior, inputs)) ?? "same";
        else action = await planChange(args.type, prior, inputs, trigger);

        let entry: StateEntry;
        if (action === "same") {
            entry = prior;
        } else {
            this.log(`${action} ${args.type} ${args.name}`);
            let result: { id: string; outputs: Record<string, unknown> };
            try {
                result = action === "update" ? await this.update(args.type, prior!, inputs) : await this.create(args.type, args.name, inputs);
            } catch (e) {
                // As the engine: a failed step leaves the resource as it was recorded.
                if (prior) this.next.resources[urn] = prior;
                if (!this.opts.continueOnError || !prior) throw e;
                // --continue-on-error: what depends on it is not performed either (below); the rest goes on.
                this.failed.add(urn);
                this.failures.push({ type: args.type, name: args.name, message: e instanceof Error ? e.message : String(e) });
                return { id: prior.id, state: prior.outputs };
            }
            const secrets = [...new Set([...registration.secretInputs, ...registration.additionalSecretOutputs])];
            entry = { type: args.type, name: args.name, id: result.id, inputs, outputs: result.outputs, trigger, secrets };
            if (action === "create" || action === "replace") this.renewed.add(urn);
            // Create-before-delete, like the engine: the replaced object goes last. (A Vault object
            // replaced delete-before-replace, the mapping, is rewritten at the same path: the same end.)
            if (action === "replace") this.pendingDeletes.push(prior!);
        }
        this.next.resources[urn] = entry;
        this.steps.push({ urn, type: args.type, name: args.name, action });
        return { id: entry.id, state: entry.outputs };
    };

    /** What `sys/auth` lists at `<path>/` (newer Vault nests the list under `data` too), or undefined. */
    private async authMethod(path: string): Promise<{ type?: string } | undefined> {
        const mounts = await this.vault("GET", "sys/auth");
        return (mounts[`${path}/`] ?? (mounts.data as Record<string, unknown> | undefined)?.[`${path}/`]) as { type?: string } | undefined;
    }

    /**
     * A read (`Resource.get`): what the engine reports as `read`, a "same" step that
     * keeps nothing in state. Only the reads this program makes are modelled.
     */
    private async read(args: MockResourceArgs, registration: Registration): Promise<{ id: string; state: Record<string, unknown> }> {
        const id = String(registration.readId);
        if (args.type !== "vault:index/authBackend:AuthBackend") throw new Error(`applier: no way to read ${args.type} (${args.name})`);
        const entry = await this.authMethod(id);
        if (!entry) throw new Error(`${args.name}: cannot read auth method ${id}: it does not exist`);
        this.steps.push({ urn: registration.urn, type: args.type, name: args.name, action: "same" });
        return { id, state: { path: id, type: entry.type } };
    }

    private async create(type: string, name: string, inputs: Record<string, unknown>): Promise<{ id: string; outputs: Record<string, unknown> }> {
        switch (type) {
            case "vault:index/authBackend:AuthBackend": {
                const path = String(inputs.path ?? inputs.type);
                if (!(await this.authMethod(path))) {
                    await this.vault("POST", `sys/auth/${path}`, { type: inputs.type, description: inputs.description });
                }
                return { id: path, outputs: { ...inputs, path } };
            }
            case "vault:index/policy:Policy":
                await this.vault("PUT", `sys/policies/acl/${inputs.name}`, { policy: inputs.policy });
                return { id: String(inputs.name), outputs: { ...inputs } };
            case "vault:pkiSecret/secretBackendRole:SecretBackendRole":
                await this.vault("POST", `${inputs.backend}/roles/${inputs.name}`, vaultBody(inputs, ["backend", "name"]));
                return { id: `${inputs.backend}/roles/${inputs.name}`, outputs: { ...inputs } };
            case "vault:index/certAuthBackendRole:CertAuthBackendRole":
                await this.vault("POST", `auth/${inputs.backend}/certs/${inputs.name}`, vaultBody(inputs, ["backend", "name"]));
                return { id: `auth/${inputs.backend}/certs/${inputs.name}`, outputs: { ...inputs } };
            case "vault:pkiSecret/secretBackendSign:SecretBackendSign": {
                const body = vaultBody(inputs, ["backend", "name", "autoRenew", "minSecondsRemaining", "altNames"]);
                if (Array.isArray(inputs.altNames) && inputs.altNames.length > 0) body.alt_names = inputs.altNames.join(",");
                const r = await this.vault("POST", `${inputs.backend}/sign/${inputs.name}`, body);
                const d = r.data as Record<string, unknown>;
                return {
                    id: String(d.serial_number),
                    outputs: {
                        ...inputs,
                        certificate: d.certificate,
                        issuingCa: d.issuing_ca,
                        caChains: d.ca_chain ?? [],
                        serialNumber: d.serial_number,
                        expiration: d.expiration,
                        renewPending: false,
                    },
                };
            }
            case "command:local:Command":
                return { id: crypto.randomUUID(), outputs: { ...inputs, ...this.runLocal(name, inputs) } };
            case "pulumi:providers:vault":
                // An explicit Vault provider (JWT login): the applier talks to Vault itself.
                return { id: crypto.randomUUID(), outputs: { ...inputs } };
            case "command:remote:Command": {
                if (inputs.environment !== undefined) throw new Error(`applier: ${name}: command.remote environment is not modelled (the program never sets one)`);
                const result = runRemote(name, inputs.connection as RemoteConnection, String(inputs.create), inputs.stdin === undefined ? undefined : String(inputs.stdin));
                return { id: crypto.randomUUID(), outputs: { ...inputs, ...result } };
            }
            default: {
                const provider = DYNAMIC_PROVIDERS[type];
                if (!provider) throw new Error(`applier: no way to perform ${type} (${name})`);
                const checked = provider.check ? await provider.check({}, inputs) : { inputs, failures: [] };
                if (checked.failures && checked.failures.length > 0) {
                    throw new Error(`${name}: invalid inputs: ${checked.failures.map((f) => `${f.property}: ${f.reason}`).join("; ")}`);
                }
                const r = await provider.create(checked.inputs);
                return { id: r.id, outputs: { ...checked.inputs, ...(r.outs ?? {}) } };
            }
        }
    }

    private async update(type: string, prior: StateEntry, inputs: Record<string, unknown>): Promise<{ id: string; outputs: Record<string, unknown> }> {
        const provider = DYNAMIC_PROVIDERS[type];
        if (provider) {
            const checked = provider.check ? await provider.check(prior.outputs, inputs) : { inputs, failures: [] };
            if (!provider.update) return { id: prior.id, outputs: { ...prior.outputs, ...checked.inputs } };
            const r = await provider.update(prior.id, prior.outputs, checked.inputs);
            return { id: prior.id, outputs: { ...checked.inputs, ...(r.outs ?? {}) } };
        }
        // Vault objects are upserts and commands re-run `create` on change: the same as creating.
        const r = await this.create(type, prior.name, inputs);
        return { id: type.startsWith("command:") ? prior.id : r.id, outputs: r.outputs };
    }

    private runLocal(name: string, inputs: Record<string, unknown>): { stdout: string; stderr: string } {
        const interpreter = (inputs.interpreter as string[] | undefined) ?? ["/bin/sh", "-c"];
        // As command.local does: the provider's whole environment plus the resource's own.
        const env = { ...process.env, ...(inputs.environment as Record<string, string> | undefined) };
        const r = spawnSync(interpreter[0], [...interpreter.slice(1), String(inputs.create)], {
            input: inputs.stdin === undefined ? "" : String(inputs.stdin),
            env,
            cwd: (inputs.dir as string | undefined) ?? process.cwd(),
            encoding: "utf8",
            maxBuffer: 16 * 1024 * 1024,
        });
        if (r.status !== 0) {
            throw new Error(`${name}: command failed (exit ${r.status ?? r.signal}): ${r.stderr.trim()}`);
        }
        return { stdout: r.stdout.trimEnd(), stderr: r.stderr.trimEnd() };
    }

    private async destroy(entry: StateEntry): Promise<void> {
        const provider = DYNAMIC_PROVIDERS[entry.type];
        if (provider?.delete) {
            this.log(`delete ${entry.type} ${entry.name}`);
            await provider.delete(entry.id, entry.outputs);
        }
        // Vault objects and commands of a replaced resource need no cleanup here:
        // their successor overwrote them (same path) or they have no delete script.
    }

    /**
     * A Vault object the program no longer declares is removed, as its provider's
     * delete would (e.g. `debug-policy` once no app asks for it). Not for replaced
     * objects: their successor lives at the same path.
     */
    private async removeUndeclared(entry: StateEntry): Promise<void> {
        const o = entry.outputs;
        const paths: Record<string, () => string> = {
            "vault:index/policy:Policy": () => `sys/policies/acl/${o.name}`,
            "vault:pkiSecret/secretBackendRole:SecretBackendRole": () => `${o.backend}/roles/${o.name}`,
            "vault:index/certAuthBackendRole:CertAuthBackendRole": () => `auth/${o.backend}/certs/${o.name}`,
            "vault:index/authBackend:AuthBackend": () => `sys/auth/${o.path}`,
        };
        const apiPath = paths[entry.type]?.();
        if (apiPath !== undefined) {
            this.log(`delete ${entry.type} ${entry.name}`);
            await this.vault("DELETE", apiPath);
        } else {
            await this.destroy(entry);
        }
    }

    /** After the evaluation: delete replaced objects, then those no longer declared. */
    async finish(): Promise<ApplierState> {
        for (const entry of [...this.pendingDeletes].reverse()) {
            await this.destroy(entry);
        }
        for (const [urn, entry] of Object.entries(this.previous.resources).reverse()) {
            if (!this.seen.has(urn)) {
                await this.removeUndeclared(entry);
                this.steps.push({ urn, type: entry.type, name: entry.name, action: "delete" });
            }
        }
        return this.next;
    }

    report(): AppliedStep[] {
        return [...this.steps];
    }
}

/**
 * Steps failed under `continueOnError`: every other step ran. `result` holds
 * what was done and the state to carry on from; the message names each failed
 * resource and why.
 */
export class ApplyFailure extends Error {
    constructor(
        public readonly result: ApplyResult,
        public readonly failures: { type: string; name: string; message: string }[],
    ) {
        super(`update failed: ${failures.map((f) => `${f.name}: ${f.message}`).join("; ")}`);
        this.name = "ApplyFailure";
    }
}

/** Evaluates the program and performs it; returns what it did and the new state. */
export async function applyProgram(opts: ApplyOptions): Promise<ApplyResult> {
    const previous = opts.state ?? { resources: {} };
    const applier = new Applier(opts, previous);
    // Dynamic providers read the token from the environment, as under `pulumi up`.
    const savedToken = process.env.VAULT_TOKEN;
    process.env.VAULT_TOKEN = opts.vault.token;
    // Not root: the sandbox runs every app as the current user (README, "Which user model ran").
    const savedSameUser = process.env.VAULT_ROTATION_SAME_USER_REHEARSAL;
    if (!runningAsRoot()) process.env.VAULT_ROTATION_SAME_USER_REHEARSAL = "1";
    try {
        const evaluation = await evaluateProgram({
            config: opts.config,
            secretKeys: opts.secretKeys,
            stack: opts.stack,
            newResource: applier.newResource,
            programPath: opts.programPath,
        });
        const state = await applier.finish();
        const result = { steps: applier.report(), evaluation, state };
        if (applier.failures.length > 0) throw new ApplyFailure(result, applier.failures);
        return result;
    } finally {
        if (savedToken === undefined) delete process.env.VAULT_TOKEN;
        else process.env.VAULT_TOKEN = savedToken;
        if (savedSameUser === undefined) delete process.env.VAULT_ROTATION_SAME_USER_REHEARSAL;
        else process.env.VAULT_ROTATION_SAME_USER_REHEARSAL = savedSameUser;
    }
}

/**
 * Writes the state for inspection. Secret values (the ssh key in a connection,
 * KV seed data) are replaced by a digest, as the Pulumi engine encrypts them:
 * no secret in plain state on disk.
 */
export function saveState(file: string, state: ApplierState): void {
    const redact = (values: Record<string, unknown>, secrets: string[]) =>
        Object.fromEntries(
            Object.entries(values).map(([k, v]) =>
                secrets.includes(k) && v !== undefined ? [k, `[secret sha256:${crypto.createHash("sha256").update(JSON.stringify(v)).digest("hex").slice(0, 16)}]`] : [k, v],
            ),
        );
    const onDisk: ApplierState = {
        resources: Object.fromEntries(
            Object.entries(state.resources).map(([urn, e]) => [urn, { ...e, inputs: redact(e.inputs, e.secrets ?? []), outputs: redact(e.outputs, e.secrets ?? []) }]),
        ),
    };
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(onDisk, null, 2), { mode: 0o600 });
    fs.renameSync(tmp, file);
}
