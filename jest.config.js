// Three projects: `unit` (no network, Pulumi mocks), `integration` (a real
// Vault dev-TLS server started by the global setup) and `engine` (the same Vault,
// driven by the real Pulumi CLI and plugins; `npm run test:engine`, not `npm test`).
const tsJest = ["ts-jest", { tsconfig: "tsconfig.json", diagnostics: { warnOnly: false } }];

/** @type {import('jest').Config} */
module.exports = {
  projects: [
    {
      displayName: "unit",
      testEnvironment: "node",
      testMatch: ["<rootDir>/test/unit/**/*.test.ts"],
      transform: { "^.+\\.ts$": tsJest },
    },
    {
      displayName: "integration",
      testEnvironment: "node",
      testMatch: ["<rootDir>/test/integration/**/*.test.ts"],
      transform: { "^.+\\.ts$": tsJest },
      globalSetup: "<rootDir>/test/integration/globalSetup.ts",
      globalTeardown: "<rootDir>/test/integration/globalTeardown.ts",
    },
    {
      displayName: "engine",
      testEnvironment: "node",
      testMatch: ["<rootDir>/test/engine/**/*.test.ts"],
      transform: { "^.+\\.ts$": tsJest },
      globalSetup: "<rootDir>/test/integration/globalSetup.ts",
      globalTeardown: "<rootDir>/test/integration/globalTeardown.ts",
    },
  ],
  testTimeout: 120000,
};
