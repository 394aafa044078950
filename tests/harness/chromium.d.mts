// Types of chromium.mjs, for the TypeScript judges in tests/node.

export declare const CHROMIUM: string;
export declare const CHROMIUM_FLAGS: readonly string[];
export declare const launchOptions: { executablePath: string; args: string[] };
