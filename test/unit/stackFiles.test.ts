// Every committed stack file against the validation the Pulumi CLI applies before
// the program starts (test/support/projectSchema.ts; the engine tier runs the real
// CLI on the same files), and how a config error reaches an operator.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError, validateStackInputs } from "../../config";
import { REPO_ROOT } from "../support/harness";
import { cliConfigVerdict } from "../support/projectSchema";
import { fakeListenerCaFile, rawStackInputs, TEST_LISTENER_CA_PEM, threeAppStackObject } from "../support/stacks";

/** Every stack file of a project directory: `Pulumi.<stack>.yaml`. */
function stackFiles(dir: string): { file: string; stack: string }[] {
    return fs
        .readdirSync(dir)
        .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => ({ file: path.join(dir, m[0]), stack: m[1] }));
}

const PROGRAM_STACKS = [
    ...stackFiles(REPO_ROOT),
    // The rehearsal's stacks are stacks of the same project (`npm run rehearse -- --stack <file>`).
    ...fs.readdirSync(path.join(REPO_ROOT, "test", "stacks")).map((f) => ({ file: path.join(REPO_ROOT, "test", "stacks", f), stack: path.basename(f, ".yaml") })),
];

describe("committed stacks pass the CLI's config validation", () => {
    it("finds the program's and the deploy project's stacks", () => {
        expect(PROGRAM_STACKS.map((s) => s.stack)).toEqual(expect.arrayContaining(["local", "prod", "ssh-loopback"]));
        expect(stackFiles(path.join(REPO_ROOT, "deploy")).map((s) => s.stack)).toContain("prod");
    });

    test.each(PROGRAM_STACKS.map((s) => [path.relative(REPO_ROOT, s.file), s]))("%s", (_name, s) => {
        expect(cliConfigVerdict(path.join(REPO_ROOT, "Pulumi.yaml"), s.file, s.stack)).toBe("");
    });

    test.each(stackFiles(path.join(REPO_ROOT, "deploy")).map((s) => [path.relative(REPO_ROOT, s.file), s]))("%s", (_name, s) => {
        expect(cliConfigVerdict(path.join(REPO_ROOT, "deploy", "Pulumi.yaml"), s.file, s.stack)).toBe("");
    });

    it("would catch an optional key declared without a default (the CLI's wording)", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vr-schema-"));
        try {
            const project = fs.readFileSync(path.join(REPO_ROOT, "Pulumi.yaml"), "utf8").replace(/(\n  edge:\n    type: object\n)    default: \{\}\n/, "$1");
            expect(project).not.toMatch(/\n  edge:\n    type: object\n    default/);
            fs.writeFileSync(path.join(dir, "Pulumi.yaml"), project);
            expect(cliConfigVerdict(path.join(dir, "Pulumi.yaml"), path.join(REPO_ROOT, "Pulumi.prod.yaml"), "prod")).toBe("Stack 'prod' is missing configuration value 'edge'");
            fs.writeFileSync(path.join(dir, "Pulumi.bad.yaml"), "config:\n  vault-rotation:apps: {}\n  vault-rotation:namePrefix: 3\n");
            expect(cliConfigVerdict(path.join(dir, "Pulumi.yaml"), path.join(dir, "Pulumi.bad.yaml"), "bad").split("\n")[0]).toMatch(/^Stack 'bad' is missing configuration values 'edge', 'rotation' and 'vault'$/);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("would catch a value of the wrong type", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vr-schema-"));
        try {
            fs.writeFileSync(path.join(dir, "Pulumi.bad.yaml"), "config:\n  vault-rotation:rotation: {}\n  vault-rotation:vault: {}\n  vault-rotation:apps: {}\n");
            expect(cliConfigVerdict(path.join(REPO_ROOT, "Pulumi.yaml"), path.join(dir, "Pulumi.bad.yaml"), "bad")).toBe("Stack 'bad' with configuration key 'apps' must be of type 'array'");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});

describe("a config error as the operator sees it", () => {
    const caFile = fakeListenerCaFile();
    const readCa = () => TEST_LISTENER_CA_PEM;

    it("is a pulumi.RunError (printed without a stack trace) with one line per problem", () => {
        const stack = threeAppStackObject(caFile);
        stack["vault-rotation:sshPrivateKey"] = "";
        (stack["vault-rotation:apps"] as { host: unknown }[])[2].host = { ssh: { host: "jobs.internal", port: 22, hostKey: (stack["vault-rotation:apps"] as { host: { ssh: { hostKey: string } } }[])[1].host.ssh.hostKey } };
        let error: unknown;
        try {
            validateStackInputs(rawStackInputs(stack), readCa);
        } catch (e) {
            error = e;
        }
        expect(error).toBeInstanceOf(ConfigError);
        expect(pulumi.RunError.isInstance(error)).toBe(true);
        const problems = (error as ConfigError).problems;
        // One line for the missing key, naming both hosts that need it.
        expect(problems.filter((p) => p.startsWith("vault-rotation:sshPrivateKey"))).toEqual([
            "vault-rotation:sshPrivateKey: required (secret) because apps[1].host.ssh, apps[2].host.ssh are set",
        ]);
        expect(new Set(problems).size).toBe(problems.length);
    });

    it("reads edge: {} (the project default the CLI fills in) as no edge proxy", () => {
        const stack = threeAppStackObject(caFile);
        const withDefault = validateStackInputs({ ...rawStackInputs(stack), edge: {} }, readCa);
        expect(withDefault.config.edge).toBeUndefined();
        const problems = (() => {
            try {
                validateStackInputs({ ...rawStackInputs(stack), edge: { listen: "x" } }, readCa);
                return [];
            } catch (e) {
                return (e as ConfigError).problems;
            }
        })();
        expect(problems.some((p) => p.startsWith("edge."))).toBe(true);
    });
});
