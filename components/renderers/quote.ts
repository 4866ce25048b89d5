// Quoting for the two languages we render. Config values are already restricted
// to strict patterns (config.ts); quoting here is the second line of defence.

/** Single-quotes a value for POSIX sh. */
export function shQuote(value: string): string {
    return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** A double-quoted HCL string; `${` and `%{` are escaped so they are never interpolated. */
export function hclString(value: string): string {
    const escaped = value
        .replace(/\\/g, "\\\\")
        .replace(/"/g, '\\"')
        .replace(/\n/g, "\\n")
        .replace(/\r/g, "\\r")
        .replace(/\t/g, "\\t")
        .replace(/\$\{/g, () => "$${")
        .replace(/%\{/g, () => "%%{");
    return `"${escaped}"`;
}

/** A Go-template string literal (used inside consul-template actions). */
export function goTemplateString(value: string): string {
    return JSON.stringify(value);
}
