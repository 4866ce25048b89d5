// Runs one of the build scripts (scripts/get-vault.sh, get-pulumi-engine.sh,
// get-pulumi-plugins.sh): their progress (stderr) is passed on line by line as
// it comes, since a first build is silent for many minutes otherwise, and the
// path the script prints last on stdout is returned.
import { spawn } from "child_process";
import * as path from "path";

export function runBuildScript(script: string, args: string[], log: (line: string) => void, timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<string> {
    return new Promise((resolve, reject) => {
        const child = spawn("bash", [script, ...args], { stdio: ["ignore", "pipe", "pipe"], env });
        let stdout = "";
        let pending = "";
        const tail: string[] = [];
        child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
        child.stderr.setEncoding("utf8").on("data", (d: string) => {
            const lines = (pending + d).split("\n");
            pending = lines.pop() ?? "";
            for (const line of lines.filter(Boolean)) {
                log(line);
                tail.push(line);
                if (tail.length > 20) tail.shift();
            }
        });
        const timer = setTimeout(() => child.kill("SIGTERM"), timeoutMs);
        child.on("error", (e) => {
            clearTimeout(timer);
            reject(e);
        });
        child.on("close", (code, signal) => {
            clearTimeout(timer);
            if (pending) {
                log(pending);
                tail.push(pending);
            }
            const name = path.basename(script);
            if (code !== 0) {
                reject(new Error(`${name} failed (${signal ?? `exit ${code}`}): ${tail.slice(-5).join(" | ") || "no output"}`));
                return;
            }
            const result = stdout.trim().split("\n").pop() ?? "";
            if (!result) reject(new Error(`${name} printed no path (its last lines: ${tail.slice(-5).join(" | ")})`));
            else resolve(result);
        });
    });
}
