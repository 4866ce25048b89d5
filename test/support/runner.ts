// One interface over the two ways this repository performs the program: the real
// Pulumi engine (engine.ts: the CLI and the vault and command plugins) and the
// applier (applier.ts: the stand-in where those are not on the machine). The
// rehearsal runs whichever is there, and says which.
import * as fs from "fs";
import * as path from "path";
import { applyProgram, ApplierState, AppliedStep, saveState } from "./applier";
import { EngineStack, EngineTools, findEngine } from "./engine";
import type { VaultConnection as TestVault } from "./vaultAdmin";

export type EngineChoice = "pulumi" | "applier";

export interface ProgramRun {
    steps: AppliedStep[];
    /** The stack's outputs (`apps`, `rotationPlan`), plain values. */
    exports: Record<string, unknown>;
    /** Everything the run left in state, as text: where no key may be. */
    stateText: string;
}

export interface ProgramRunner {
    /** For the report: `pulumi v3.274.1 (file backend)` or `applier (...)`. */
    readonly engine: string;
    readonly kind: EngineChoice;
    up(config: Record<string, string>): Promise<ProgramRun>;
    close(): void;
}

class ApplierRunner implements ProgramRunner {
    readonly kind = "applier";
    private state?: ApplierState;
    private readonly states: ApplierState[] = [];

    constructor(
        readonly engine: string,
        private readonly opts: { vault: TestVault; stack: string; statePath?: string; log: (line: string) => void },
    ) {}

    async up(config: Record<string, string>): Promise<ProgramRun> {
        // As operators run it (--continue-on-error): one app's failure does not hold back the others.
        const r = await applyProgram({ config, state: this.state, vault: this.opts.vault, stack: this.opts.stack, log: this.opts.log, continueOnError: true });
        this.state = r.state;
        this.states.push(r.state);
        if (this.opts.statePath) saveState(this.opts.statePath, r.state);
        // Every state this runner produced: an old key left in an earlier one counts too.
        return { steps: r.steps, exports: r.evaluation.exports, stateText: JSON.stringify(this.states) };
    }

    close(): void {
        // Nothing runs between applies.
    }
}

class EngineRunner implements ProgramRunner {
    readonly kind = "pulumi";
    private stack?: EngineStack;
    private readonly checkpoints: string[] = [];

    constructor(
        readonly engine: string,
        private readonly opts: { tools: EngineTools; vault: TestVault; stack: string; root: string; log: (line: string) => void },
    ) {}

    async up(config: Record<string, string>): Promise<ProgramRun> {
        if (!this.stack) {
            fs.mkdirSync(this.opts.root, { recursive: true });
            this.stack = await EngineStack.create({ tools: this.opts.tools, stack: this.opts.stack, config, vaultToken: this.opts.vault.token ?? "", root: this.opts.root, log: this.opts.log });
        } else {
            await this.stack.setConfig(config);
        }
        const r = await this.stack.up({ continueOnError: true });
        this.checkpoints.push(this.stack.checkpointText());
        return { steps: r.steps, exports: r.outputs, stateText: this.checkpoints.join("\n") };
    }

    close(): void {
        // The project and backend stay beside the sandbox for inspection.
    }
}

/**
 * The runner for `choice` (default: the real engine when the CLI and both
 * plugins are installed, else the applier). Asking for `pulumi` where it is
 * missing fails naming the scripts that install it.
 */
export function programRunner(opts: { choice?: EngineChoice; vault: TestVault; stack: string; workDir: string; log: (line: string) => void }): ProgramRunner {
    const found = opts.choice === "applier" ? undefined : findEngine();
    if (found?.tools) {
        return new EngineRunner(`pulumi ${found.tools.version} (file backend)`, { tools: found.tools, vault: opts.vault, stack: opts.stack, root: path.join(opts.workDir, "engine"), log: opts.log });
    }
    if (opts.choice === "pulumi") throw new Error(`--engine pulumi: ${found?.missing}`);
    const why = opts.choice === "applier" ? "asked for with --engine applier" : `no Pulumi CLI/plugins: ${found?.missing}`;
    return new ApplierRunner(`applier (${why})`, { vault: opts.vault, stack: opts.stack, statePath: path.join(opts.workDir, "state.json"), log: opts.log });
}
