// The stack-config validation the Pulumi CLI applies before a program starts
// (pkg/workspace/config.go, mergeConfig and validateStackConfigValues, CLI
// v3.274.1): a key the project declares in its own namespace with neither
// `default` nor `value` must be set by every stack, and a stack value of a
// declared type must have that type. The engine tier checks the same stacks with
// the real CLI; this copy lets `npm test` catch a schema change on a machine
// without one.
import * as fs from "fs";
import * as yaml from "js-yaml";

interface ConfigTypeDeclaration {
    type?: string;
    items?: { type?: string };
    default?: unknown;
    value?: unknown;
}

interface ProjectFile {
    name: string;
    config?: Record<string, ConfigTypeDeclaration | string | number | boolean>;
}

/** A project key's full name (`ns:key`); bare keys belong to the project's namespace. */
function fullKey(project: string, key: string): string {
    return key.includes(":") ? key : `${project}:${key}`;
}

/** The CLI's ValidateConfigValue, for the types a project may declare. */
function hasType(type: string, items: string | undefined, value: unknown): boolean {
    switch (type) {
        case "string":
            return typeof value === "string";
        case "integer":
            return (typeof value === "number" && Number.isInteger(value)) || (typeof value === "string" && /^[+-]?\d+$/.test(value));
        case "boolean":
            return typeof value === "boolean" || value === "true" || value === "false";
        case "object":
            return typeof value === "object" && value !== null && !Array.isArray(value);
        case "array":
            return Array.isArray(value) && (items === undefined || value.every((v) => hasType(items, undefined, v)));
        default:
            return false;
    }
}

/**
 * The CLI's verdict on one stack file of a project: "" when it passes, else the
 * CLI's own wording (`Stack 'prod' is missing configuration value 'edge'`) or the
 * type mismatch.
 */
export function cliConfigVerdict(projectFile: string, stackFile: string, stackName: string): string {
    const project = yaml.load(fs.readFileSync(projectFile, "utf8")) as ProjectFile;
    const stack = (yaml.load(fs.readFileSync(stackFile, "utf8")) as { config?: Record<string, unknown> } | null)?.config ?? {};
    const missing: string[] = [];
    const wrongType: string[] = [];
    for (const [key, decl] of Object.entries(project.config ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
        // A plain value in the project file is a value, not a declaration.
        if (typeof decl !== "object" || decl === null) continue;
        const name = fullKey(project.name, key);
        const stackValue = stack[name];
        if (stackValue === undefined) {
            if (decl.default === undefined && decl.value === undefined && name.startsWith(`${project.name}:`)) missing.push(key);
            continue;
        }
        // A secure value is an encrypted string; the CLI checks its decrypted form, which we cannot.
        const secure = typeof stackValue === "object" && stackValue !== null && "secure" in stackValue;
        if (decl.type !== undefined && !secure && !hasType(decl.type, decl.items?.type, stackValue)) {
            wrongType.push(`Stack '${stackName}' with configuration key '${key}' must be of type '${decl.type}'`);
        }
    }
    if (missing.length > 0) {
        const quoted = missing.map((k) => `'${k}'`);
        const list = quoted.length === 1 ? quoted[0] : `${quoted.slice(0, -1).join(", ")} and ${quoted[quoted.length - 1]}`;
        return `Stack '${stackName}' is missing configuration value${missing.length === 1 ? "" : "s"} ${list}`;
    }
    return wrongType.join("\n");
}
