// ESLint flat config: typescript-eslint with type information, so that the
// Pulumi rules can see which values are Outputs.
const tseslint = require("typescript-eslint");
const pulumi = require("@pulumi/eslint-plugin");

module.exports = tseslint.config(
  { ignores: ["node_modules/**", "bin/**", ".rehearsal/**", "coverage/**", "eslint.config.js", "jest.config.js"] },
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: {
      parserOptions: { project: "./tsconfig.json", tsconfigRootDir: __dirname },
    },
    plugins: { "@pulumi": pulumi },
    rules: {
      "@pulumi/no-output-in-template-literal": "error",
      "@pulumi/no-output-instance-in-template-literal": "error",
      "@typescript-eslint/no-floating-promises": "error",
      // Dynamic providers must `require` their dependencies inside methods (see DESIGN.md).
      "@typescript-eslint/no-require-imports": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_" }],
    },
  },
  {
    // The providers package's CommonJS entry point and the profiler preload: plain node loads them, so they `require`.
    files: ["providers/index.js", "providers/forwarders/*.js", "scripts/lib/cpuProfPreload.js"],
    languageOptions: { sourceType: "commonjs", globals: { require: "readonly", module: "writable", __dirname: "readonly", process: "readonly" } },
    rules: { "@typescript-eslint/no-require-imports": "off" },
  },
);
