// VaultTakeover: before the program writes its Vault objects for the first time,
// reads the ones that already exist (a Vault the runbook configured by hand) and
// says, one line per object, what the program's write will change. The write
// itself is an upsert by the vault provider, which would otherwise take the
// object over without a word. It changes nothing in Vault.
//
// It runs once per set of objects: a changed object list (a new prefix) surveys
// again, a changed desired value does not (that is an ordinary update, shown by
// the preview).
//
// Pulumi runs this provider through a forwarder (forward.ts) that loads it by
// package name (@vault-rotation/providers), so its imports are ordinary ones.
import * as pulumi from "@pulumi/pulumi";
import { forwardingProvider } from "./forward";
import type { VaultConnection } from "./connection";
import type { VaultClient } from "./vaultClient";
import { parseCertificate, splitPemCertificates } from "./pem";
import { asRecord, asString, clientForConnection, connectionProblems, sameJson } from "./vaultClient";

/** One Vault object the program is about to write, with the values it will write. */
export type TakenOverObject =
    | { kind: "policy"; name: string; policy: string }
    | { kind: "pki-role"; mount: string; name: string; want: Record<string, unknown> }
    | { kind: "cert-mapping"; authPath: string; name: string; want: Record<string, unknown>; issuingCaFrom: string };

export interface VaultTakeoverInputs {
    connection: VaultConnection;
    objects: TakenOverObject[];
}

export interface VaultTakeoverOutputs extends VaultTakeoverInputs {
    /** One line per object that existed before this program wrote it. */
    notes: string[];
    /** When the survey ran (ISO 8601): the run that took the objects over. */
    surveyedAt: string;
}

/** The Vault path of an object (what a note names). */
export function objectPath(o: TakenOverObject): string {
    switch (o.kind) {
        case "policy":
            return `sys/policies/acl/${o.name}`;
        case "pki-role":
            return `${o.mount}/roles/${o.name}`;
        case "cert-mapping":
            return `auth/${o.authPath}/certs/${o.name}`;
    }
}

const KIND_LABEL: Record<TakenOverObject["kind"], string> = { policy: "policy", "pki-role": "PKI role", "cert-mapping": "cert-auth mapping" };

async function readOrUndefined(client: VaultClient, path: string): Promise<Record<string, unknown> | undefined> {
    const body = await client.read(path);
    return body === undefined ? undefined : asRecord(body.data);
}

function shown(value: unknown): string {
    const text = JSON.stringify(value ?? null);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Vault's read form and the program's write form of one field, made comparable. */
function normalized(want: unknown, have: unknown): [unknown, unknown] {
    if (Array.isArray(want)) {
        const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : v === null || v === undefined || v === "" ? [] : String(v).split(",")).sort();
        return [list(want), list(have)];
    }
    // Durations and sizes: the program writes seconds as text, Vault reads back numbers.
    if (typeof want === "string" && /^\d+$/.test(want) && typeof have === "number") return [Number(want), have];
    if (typeof want === "number" && typeof have === "string" && /^\d+$/.test(have)) return [want, Number(have)];
    return [want, have ?? (typeof want === "boolean" ? false : typeof want === "string" ? "" : have)];
}

/** `field old -> new` for every field the program writes whose current value differs. */
export function fieldChanges(want: Record<string, unknown>, have: Record<string, unknown>): string[] {
    const out: string[] = [];
    for (const [field, value] of Object.entries(want)) {
        const [w, h] = normalized(value, have[field]);
        if (!sameJson(w, h)) out.push(`${field} ${shown(h)} -> ${shown(w)}`);
    }
    return out;
}

function subjects(pem: string): string[] {
    return splitPemCertificates(pem).map((c) => {
        try {
            return parseCertificate(c).subjectCN || "(no CN)";
        } catch {
            return "(unparsable)";
        }
    });
}

/** The note for one object, or undefined when it did not exist. */
async function noteFor(client: VaultClient, o: TakenOverObject, issuingCa: (mount: string) => Promise<string>): Promise<string | undefined> {
    const path = objectPath(o);
    const have = await readOrUndefined(client, path);
    if (have === undefined) return undefined;
    let changes: string[];
    if (o.kind === "policy") {
        const before = (asString(have.policy) ?? asString(have.rules) ?? "").trim();
        changes = before === o.policy.trim() ? [] : [`rules replaced (${before.split("\n").length} lines before, ${o.policy.trim().split("\n").length} now)`];
    } else if (o.kind === "pki-role") {
        changes = fieldChanges(o.want, have);
    } else {
        changes = fieldChanges(o.want, have);
        const trusted = subjects(asString(have.certificate) ?? "");
        const issuing = subjects(await issuingCa(o.issuingCaFrom));
        if (!sameJson(trusted, issuing)) changes.unshift(`certificate trusts ${shown(trusted)} -> the issuing CA ${shown(issuing)}`);
    }
    const what = changes.length === 0 ? "already as configured" : changes.join("; ");
    return `took over existing ${KIND_LABEL[o.kind]} ${path}: ${what}`;
}

/** Reads every object and returns the notes, in the order of the objects. */
export async function surveyObjects(client: VaultClient, objects: readonly TakenOverObject[]): Promise<string[]> {
    const cas = new Map<string, Promise<string>>();
    const issuingCa = (mount: string) => {
        if (!cas.has(mount)) cas.set(mount, client.read(`${mount}/cert/ca`).then((b) => asString(asRecord(asRecord(b).data).certificate) ?? ""));
        return cas.get(mount)!;
    };
    const notes: string[] = [];
    for (const o of objects) {
        const note = await noteFor(client, o, issuingCa);
        if (note !== undefined) notes.push(note);
    }
    return notes;
}

function objectPaths(objects: unknown): string[] {
    return Array.isArray(objects) ? objects.map((o) => objectPath(o as TakenOverObject)).sort() : [];
}

export const vaultTakeoverProvider: pulumi.dynamic.ResourceProvider<VaultTakeoverInputs, VaultTakeoverOutputs> = {
    async check(_olds, news) {
        const failures = connectionProblems(news.connection);
        if (!Array.isArray(news.objects)) failures.push({ property: "objects", reason: "must be a list of Vault objects" });
        return { inputs: news, failures };
    },

    async diff(_id, olds, news) {
        // Surveyed once per set of objects: a new value for an object it already saw is the object's own update.
        const replace = !sameJson(objectPaths(olds.objects), objectPaths(news.objects));
        return { changes: replace, replaces: replace ? ["objects"] : [], deleteBeforeReplace: false };
    },

    async create(inputs) {
        const notes = await surveyObjects(clientForConnection(inputs.connection), inputs.objects);
        return { id: `takeover:${objectPaths(inputs.objects).length}`, outs: { ...inputs, notes, surveyedAt: new Date().toISOString() } };
    },

    // Nothing of Vault's to undo.
    async delete() {},
};

export interface VaultTakeoverArgs {
    connection: pulumi.Input<VaultConnection>;
    objects: pulumi.Input<pulumi.Input<TakenOverObject>[]>;
}

// What each VaultTakeover serializes as its provider: a ~1 KB forwarder, loaded by package name (forward.ts).
const vaultTakeoverForwarder = forwardingProvider("vaultTakeoverProvider", vaultTakeoverProvider);

/** When this program started: notes of a survey made since then are this run's. */
const PROGRAM_STARTED_AT = Date.now();

/**
 * Notes what the program's first write changes in objects that already exist,
 * one log line each in the update that took them over (and only that one: the
 * notes stay in its outputs, which later runs carry unchanged).
 */
export class VaultTakeover extends pulumi.dynamic.Resource {
    public readonly notes!: pulumi.Output<string[]>;
    public readonly surveyedAt!: pulumi.Output<string>;

    constructor(name: string, args: VaultTakeoverArgs, opts?: pulumi.CustomResourceOptions) {
        super(vaultTakeoverForwarder, name, { ...args, notes: undefined, surveyedAt: undefined }, { ...opts }, "vault-rotation", "VaultTakeover");
        pulumi.all([this.notes, this.surveyedAt]).apply(([notes, at]) => {
            // A survey from an earlier run (same outputs, carried over): already said then.
            if (!at || Date.parse(at) < PROGRAM_STARTED_AT) return;
            for (const note of notes ?? []) void pulumi.log.info(note, this);
        });
    }
}
