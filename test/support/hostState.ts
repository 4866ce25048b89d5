// Host-state text for tests that feed the check a login verdict of their own:
// the read-state output with its `### login` section set to one line (added
// before `### agent-version` when the output has none).
export function withLogin(hostState: string, line: string): string {
    const lines = hostState.split("\n");
    const start = lines.indexOf("### login");
    if (start >= 0) {
        let end = start + 1;
        while (end < lines.length && !lines[end].startsWith("### ")) end++;
        return [...lines.slice(0, start + 1), line, ...lines.slice(end)].join("\n");
    }
    const at = lines.indexOf("### agent-version");
    const index = at >= 0 ? at : lines.length;
    return [...lines.slice(0, index), "### login", line, ...lines.slice(index)].join("\n");
}
