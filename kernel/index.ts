// The notebook kernel's front door: start it, install its kernelspec, and the comm registry
// that runtime code (widgets, job review) uses to talk to the frontend.
export { startKernel } from "./main";
export { installKernelSpec, kernelSpec, kernelsDir, KERNEL_NAME, DISPLAY_NAME, type InstallTarget, type KernelSpec } from "./kernelspec";
export { Comm, CommRegistry, commRegistry, openComm, registerCommTarget, type CommCloseHandler, type CommMessageHandler, type CommOpenMessage, type CommTargetHandler } from "./comms";
export { KernelSockets, type RequestChannel, type SendChannel, type MessageHandler } from "../wire/server";
export { KernelClient, ClientComm, KernelLostError, KernelTimeoutError, type ConnectOptions, type ExecuteOptions, type ExecuteResult, type ExecuteReply, type KernelInfoReply, type ClientCommHandler } from "../wire/client";
export { OutputArea, DisplayRegistry, type NotebookOutput } from "../wire/iopub-outputs";
export { launchKernel, LaunchedKernel, findKernelSpec, kernelSearchDirs, type LaunchOptions, type FoundKernelSpec } from "./launcher";
