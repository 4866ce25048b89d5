// The read-host-state script's output format, shared by the component that
// renders the script and the provider that checks what it printed. Pure, and
// below both layers, so that no provider imports a component.

/** Splits the output of the read-host-state script into its sections. */
export function parseHostState(stdout: string): { fullchain: string; previous: string; reload: string; service: string; agentVersion: string } {
    const sections: Record<string, string[]> = {};
    let current: string | undefined;
    for (const line of stdout.split("\n")) {
        const m = /^### ([a-z-]+)$/.exec(line);
        if (m) {
            current = m[1];
            sections[current] = [];
        } else if (current) {
            sections[current].push(line);
        }
    }
    const text = (k: string) => (sections[k] ?? []).join("\n").trim();
    return { fullchain: text("fullchain"), previous: text("previous"), reload: text("reload"), service: text("service"), agentVersion: text("agent-version") };
}
