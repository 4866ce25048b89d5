// Evaluates the Pulumi program under mocks and records every registration with
// its resource options (parent, dependsOn, replacementTrigger, ...), which the
// plain `Mocks` interface does not show: we observe them by subclassing the
// SDK's MockMonitor.
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";
import { resolveStepScript } from "../../components/stepScripts";

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
export const PROJECT = "vault-rotation";

export interface Registration {
    type: string;
    name: string;
    urn: string;
    parentUrn: string;
    custom: boolean;
    inputs: Record<string, unknown>;
    /** URNs of explicit dependencies (dependsOn, expanded to component children). */
    dependencies: string[];
    /** Per input property, the URNs its value came from (what the engine sees as unknown while they change). */
    propertyDependencies: Record<string, string[]>;

    /** The `replacementTrigger` option, deserialized, or undefined when not set. */
    replacementTrigger: unknown;
    additionalSecretOutputs: string[];
    deleteBeforeReplace: boolean;
    /** The `protect` option: the engine refuses to delete or replace it. */
    protect: boolean;
    /** A read (`Resource.get`): the ID read; undefined for a registration. */
    readId?: string;
    /** Inputs the SDK marked secret (top-level property names). */
    secretInputs: string[];
    /** Provider reference (`urn::id`), or "" for the default provider. */
    provider: string;
}

export interface MockResourceArgs {
    type: string;
    name: string;
    inputs: Record<string, unknown>;
    custom?: boolean;
    id?: string;
    provider?: string;
}

/** What a mocked resource "returns": its id and output state. */
export type NewResource = (args: MockResourceArgs, registration: Registration) => Promise<{ id: string; state: Record<string, unknown> }>;

/** The program threw while it was evaluated; `registrations` is what it had registered by then. */
export class ProgramFailure extends Error {
    constructor(
        public readonly cause: unknown,
        public readonly registrations: Registration[],
    ) {
        super(cause instanceof Error ? cause.message : String(cause));
        this.name = "ProgramFailure";
    }
}

export interface Evaluation {
    registrations: Registration[];
    /** The program module's exports (Outputs, resolved into plain values). */
    exports: Record<string, unknown>;
    /** `name -> registration` for convenience (names are unique in this program). */
    byName: Map<string, Registration>;
}

/**
 * Outside jest: forget the SDK and the program's modules so the next require
 * loads them anew, as a new `pulumi up` process would. The support modules
 * (this harness, the applier, the rehearsal) stay loaded.
 */
function freshModules(fn: () => void): void {
    const support = [path.join(REPO_ROOT, "test", "support"), path.join(REPO_ROOT, "scripts")];
    for (const file of Object.keys(require.cache)) {
        const sdk = file.includes(`${path.sep}node_modules${path.sep}@pulumi${path.sep}`);
        const program = file.startsWith(REPO_ROOT) && !file.includes(`${path.sep}node_modules${path.sep}`) && !support.some((d) => file.startsWith(d));
        if (sdk || program) delete require.cache[file];
    }
    fn();
}

/** Reads `Pulumi.<stack>.yaml` into the flat `namespace:key -> string` map the SDK expects. */
export function loadStackConfig(file: string): Record<string, string> {
    const doc = yaml.load(fs.readFileSync(file, "utf8")) as { config?: Record<string, unknown> };
    return flattenConfig(doc.config ?? {});
}

/** The same flat config with `rotation.epoch` set: how a rotation is asked for. */
export function withEpoch(config: Record<string, string>, epoch: string): Record<string, string> {
    const rotation = JSON.parse(config["vault-rotation:rotation"]);
    return { ...config, "vault-rotation:rotation": JSON.stringify({ ...rotation, epoch }) };
}

/** Turns a structured config object into the SDK's string map (objects JSON-encoded). */
export function flattenConfig(config: Record<string, unknown>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(config)) {
        out[k] = typeof v === "string" ? v : JSON.stringify(v);
    }
    return out;
}

const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

function isSecretWrapper(value: unknown): value is { value: unknown } {
    return typeof value === "object" && value !== null && (value as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

/** Replaces the SDK's secret wrappers with their values; reports whether any was found. */
function unwrapSecrets(value: unknown): { value: unknown; secret: boolean } {
    if (isSecretWrapper(value)) return { value: unwrapSecrets(value.value).value, secret: true };
    if (Array.isArray(value)) {
        const parts = value.map(unwrapSecrets);
        return { value: parts.map((p) => p.value), secret: parts.some((p) => p.secret) };
    }
    if (value && typeof value === "object") {
        let secret = false;
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(value)) {
            const u = unwrapSecrets(v);
            out[k] = u.value;
            secret = secret || u.secret;
        }
        return { value: out, secret };
    }
    return { value, secret: false };
}

/** The request's per-property dependencies as plain lists. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function propertyDependenciesOf(req: any): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    req.getPropertydependenciesMap().forEach((deps: { getUrnsList(): string[] }, key: string) => {
        out[key] = deps.getUrnsList();
    });
    return out;
}

/**
 * Runs the program in a fresh module registry with the given config, waiting
 * until every registration has finished. `newResource` decides each resource's
 * outputs (the default mock models the providers' computed outputs).
 */
export async function evaluateProgram(opts: {
    config: Record<string, string>;
    secretKeys?: string[];
    stack?: string;
    preview?: boolean;
    newResource?: NewResource;
    programPath?: string;
}): Promise<Evaluation> {
    const programPath = opts.programPath ?? path.join(REPO_ROOT, "index.ts");
    const newResource = opts.newResource ?? defaultNewResource;
    let result: Evaluation | undefined;
    let failure: unknown;

    let finished: Promise<void> = Promise.resolve();
    // Under jest every evaluation gets a fresh module registry (a fresh SDK and
    // program). Outside jest (the rehearsal) each process evaluates once.
    const underJest = typeof jest !== "undefined";
    const isolate = underJest ? (fn: () => void) => jest.isolateModules(fn) : (fn: () => void) => freshModules(fn);
    isolate(() => {
        if (underJest) {
            // Dynamic resources serialize their provider's closure when constructed.
            // That uses the V8 inspector, which cannot run inside jest's module
            // sandbox; the graph does not depend on the text, so it is stubbed here.
            // Real serialization runs in the rehearsal and in resources.test.ts.
            jest.doMock("@pulumi/pulumi/runtime/closure/serializeClosure", () => ({
                serializeFunction: async () => ({ text: "exports.handler = undefined;", exportName: "handler", containsSecrets: false }),
            }));
        }
        const pulumi = require("@pulumi/pulumi") as typeof import("@pulumi/pulumi");
        const mocksModule = require("@pulumi/pulumi/runtime/mocks");
        const rpc = require("@pulumi/pulumi/runtime/rpc");
        const settings = require("@pulumi/pulumi/runtime/settings");
        const state = require("@pulumi/pulumi/runtime/state");

        const registrations: Registration[] = [];
        const pending = new Map<string, Registration>();
        let failResource: (e: unknown) => void = () => undefined;
        const resourceFailed = new Promise<never>((_resolve, reject) => {
            failResource = (e) => reject(new ProgramFailure(e, registrations));
        });
        resourceFailed.catch(() => undefined);

        const MockMonitorBase = mocksModule.MockMonitor as new (mocks: unknown) => {
            newUrn(parent: string, type: string, name: string): string;
            // eslint-disable-next-line @typescript-eslint/no-explicit-any
            registerResource(req: any, callback: any): Promise<void>;
            // eslint-disable-next-line @typescript-eslint/no-explicit-any
            readResource(req: any, callback: any): Promise<void>;
        };
        class RecordingMonitor extends MockMonitorBase {
            // eslint-disable-next-line @typescript-eslint/no-explicit-any
            async registerResource(req: any, callback: any) {
                const type = req.getType();
                const name = req.getName();
                const parentUrn = req.getParent();
                const rawInputs = rpc.deserializeProperties(req.getObject(), true) as Record<string, unknown>;
                const inputs: Record<string, unknown> = {};
                const secretInputs: string[] = [];
                for (const [k, v] of Object.entries(rawInputs)) {
                    const u = unwrapSecrets(v);
                    inputs[k] = u.value;
                    if (u.secret) secretInputs.push(k);
                }
                const trigger = req.hasReplacementTrigger() ? req.getReplacementTrigger() : undefined;
                const registration: Registration = {
                    type,
                    name,
                    urn: this.newUrn(parentUrn, type, name),
                    parentUrn,
                    custom: req.getCustom(),
                    inputs,
                    dependencies: req.getDependenciesList(),
                    propertyDependencies: propertyDependenciesOf(req),
                    replacementTrigger: trigger ? rpc.deserializeProperty(trigger.toJavaScript()) : undefined,
                    additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
                    deleteBeforeReplace: req.getDeletebeforereplace(),
                    protect: req.getProtect() === true,
                    secretInputs,
                    provider: req.getProvider(),
                };
                registrations.push(registration);
                pending.set(`${type}::${name}`, registration);
                return super.registerResource(req, callback);
            }

            // eslint-disable-next-line @typescript-eslint/no-explicit-any
            async readResource(req: any, callback: any) {
                const type = req.getType();
                const name = req.getName();
                const parentUrn = req.getParent();
                const registration: Registration = {
                    type,
                    name,
                    urn: this.newUrn(parentUrn, type, name),
                    parentUrn,
                    custom: true,
                    inputs: rpc.deserializeProperties(req.getProperties(), true) as Record<string, unknown>,
                    dependencies: req.getDependenciesList(),
                    propertyDependencies: {},
                    replacementTrigger: undefined,
                    additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
                    deleteBeforeReplace: false,
                    protect: false,
                    secretInputs: [],
                    provider: req.getProvider(),
                    readId: req.getId(),
                };
                registrations.push(registration);
                pending.set(`${type}::${name}`, registration);
                return super.readResource(req, callback);
            }
        }

        const mocks = {
            newResource: async (args: MockResourceArgs) => {
                const registration = pending.get(`${args.type}::${args.name}`);
                if (!registration) throw new Error(`no registration recorded for ${args.type} ${args.name}`);
                if (!args.custom) return { id: "", state: args.inputs };
                try {
                    // Mocks see the secret wrappers; providers see plain values.
                    return await newResource({ ...args, inputs: registration.inputs }, registration);
                } catch (e) {
                    // A failed resource never resolves its outputs: stop the evaluation with its error.
                    failResource(e);
                    throw e;
                }
            },
            call: async () => ({}),
        };
        // setMocks enables the monitor features (secrets, replacementTrigger, ...);
        // then our recording monitor takes the mock monitor's place.
        void pulumi.runtime.setMocks(mocks, PROJECT, opts.stack ?? "test", opts.preview ?? false);
        state.getStore().settings.monitor = new RecordingMonitor(mocks);
        pulumi.runtime.setAllConfig(opts.config, opts.secretKeys ?? []);

        let program: Record<string, unknown>;
        try {
            program = require(programPath);
        } catch (e) {
            failure = new ProgramFailure(e, registrations);
            return;
        }
        const work = (async () => {
            const exports: Record<string, unknown> = {};
            for (const [k, v] of Object.entries(program)) {
                exports[k] = await resolveDeep(pulumi, v);
            }
            await settings.waitForRPCs();
            // Reads (`Resource.get`) share a name with what they read: by name means the registered one.
            const byName = new Map(registrations.filter((r) => r.readId === undefined).map((r) => [r.name, r]));
            result = { registrations, exports, byName };
        })();
        finished = Promise.race([work, resourceFailed]);
    });
    if (failure) throw failure;
    // A failed registration also surfaces inside the SDK as an unhandled
    // rejection; route it to the evaluation's result instead of crashing.
    let unhandled: unknown;
    const onUnhandled = (reason: unknown) => {
        unhandled = unhandled ?? reason;
    };
    process.on("unhandledRejection", onUnhandled);
    try {
        await finished;
    } finally {
        // Give the SDK's own rejections a turn to arrive before unhooking.
        await new Promise((resolve) => setImmediate(resolve));
        process.off("unhandledRejection", onUnhandled);
    }
    if (unhandled && !result) throw unhandled;
    if (!result) throw new Error("program evaluation did not finish");
    return result;
}

async function resolveDeep(pulumi: typeof import("@pulumi/pulumi"), value: unknown): Promise<unknown> {
    if (pulumi.Output.isInstance(value)) {
        return new Promise((resolve) => (value as import("@pulumi/pulumi").Output<unknown>).apply((v) => resolve(v)));
    }
    if (Array.isArray(value)) return Promise.all(value.map((v) => resolveDeep(pulumi, v)));
    if (value && typeof value === "object" && !(value instanceof pulumi.Resource)) {
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(value)) out[k] = await resolveDeep(pulumi, v);
        return out;
    }
    return value;
}

function digest(text: string): string {
    return (require("crypto") as typeof import("crypto")).createHash("sha256").update(text).digest("hex");
}

/** `ab:cd:...` from a digest, like Vault's serial numbers. */
function serialFrom(text: string): string {
    return (digest(text).slice(0, 32).match(/../g) ?? []).join(":");
}

/**
 * The default mock: models each provider's computed outputs deterministically
 * from the inputs.
 */
export const defaultNewResource: NewResource = async (args) => {
    const inputs = args.inputs;
    const id = `${args.name}-id`;
    switch (args.type) {
        case "vault:pkiSecret/secretBackendSign:SecretBackendSign": {
            const serial = serialFrom(String(inputs.csr));
            return {
                id,
                state: {
                    ...inputs,
                    certificate: `-----BEGIN CERTIFICATE-----\nMOCK${serial}\n-----END CERTIFICATE-----\n`,
                    issuingCa: "-----BEGIN CERTIFICATE-----\nMOCKISSUING\n-----END CERTIFICATE-----\n",
                    caChains: ["-----BEGIN CERTIFICATE-----\nMOCKISSUING\n-----END CERTIFICATE-----\n"],
                    serialNumber: serial,
                    expiration: 1893456000,
                },
            };
        }
        case "vault:index/authBackend:AuthBackend":
            return { id, state: { ...inputs, path: inputs.path ?? inputs.type, accessor: "auth_cert_mock" } };
        case "command:local:Command":
        case "command:remote:Command": {
            // A run's output reflects what it ran: the keygen step prints a CSR, the rotate step the new certificate.
            const ran = digest(JSON.stringify([inputs.create, inputs.triggers]));
            const stdout = resolveStepScript(String(inputs.create)).includes("STEP='agent-keygen'")
                ? `-----BEGIN CERTIFICATE REQUEST-----\nMOCK${ran}\n-----END CERTIFICATE REQUEST-----`
                : `### fullchain\nMOCK-OUTPUT-${ran}\n### end\n`;
            return { id, state: { ...inputs, stdout, stderr: "" } };
        }
        case "pulumi-nodejs:dynamic/vault-rotation:IssuingChain":
            return { id, state: { ...inputs, chainPem: "-----BEGIN CERTIFICATE-----\nMOCKINTERMEDIATE\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nMOCKROOT\n-----END CERTIFICATE-----\n", digest: "mock" } };
        case "pulumi-nodejs:dynamic/vault-rotation:KvMount":
            return { id, state: { ...inputs, type: "kv", version: "2" } };
        case "pulumi-nodejs:dynamic/vault-rotation:KvSeed":
            return { id, state: { ...inputs, status: "existed" } };
        case "pulumi-nodejs:dynamic/vault-rotation:RotationCheck":
            return {
                id,
                state: {
                    ...inputs,
                    agentSerial: "aa:bb",
                    leafSerial: "cc:dd",
                    previousLeafSerial: "",
                    leafNotAfter: "2030-01-01T00:00:00.000Z",
                    leafDaysLeft: 30,
                    tokenPolicies: [],
                    servedSerial: "",
                    servedVia: "not checked (no serve.endpoint)",
                    checkedAt: "2026-11-27T00:00:00.000Z",
                    serverVersion: "1.21.0",
                    agentVersion: "1.21.0",
                    versionMismatch: false,
                    agentAhead: false,
                    versionWarning: "",
                },
            };
        default:
            return { id, state: { ...inputs } };
    }
};
