/** The bendsave version recorded in manifests and repository configs. */
export const TOOL_VERSION = "0.1.0"
