// Generated from planner/vocabulary.py by `python -m planner.vocabulary`: do not
// edit (tests/test_vocabulary.py fails when it is stale).
export const RUN = Object.freeze({
  PENDING: "pending",
  AWAITING_APPROVAL: "awaiting_approval",
  RUNNING: "running",
  PAUSED: "paused",
  SUCCEEDED: "succeeded",
  FAILED: "failed",
  CANCELLED: "cancelled",
});
export const STEP = Object.freeze({
  PENDING: "pending",
  RUNNING: "running",
  SUCCEEDED: "succeeded",
  FAILED: "failed",
  SKIPPED: "skipped",
  REPLACED: "replaced",
  CANCELLED: "cancelled",
});
export const ATTEMPT = Object.freeze({
  RUNNING: "running",
  SUCCEEDED: "succeeded",
  FAILED: "failed",
  LOST: "lost",
  REVOKED: "revoked",
  CANCELLED: "cancelled",
  SUPERSEDED: "superseded",
});
export const EVENT = Object.freeze({
  RUN_CREATED: "run.created",
  RUN_STARTED: "run.started",
  RUN_AWAITING_APPROVAL: "run.awaiting_approval",
  RUN_PENDING: "run.pending",
  RUN_PAUSED: "run.paused",
  RUN_RUNNING: "run.running",
  RUN_FINISHED: "run.finished",
  RUN_RETRIED: "run.retried",
  RUN_REPAIRED: "run.repaired",
  RUN_CALLBACK_SENT: "run.callback_sent",
  RUN_CALLBACK_FAILED: "run.callback_failed",
  PLAN_INSTALLED: "plan.installed",
  PLAN_STEP_WRITTEN: "plan.step_written",
  STEP_STARTED: "step.started",
  STEP_FINISHED: "step.finished",
  STEP_RETRYING: "step.retrying",
  STEP_RELEASED: "step.released",
  STEP_SUPERSEDED: "step.superseded",
  STEP_CANCELLED: "step.cancelled",
  AGENT_TURN: "agent.turn",
  AGENT_TOOL_CALL: "agent.tool_call",
});
export const TURN = Object.freeze({
  THINKING: "thinking",
  TOOLS: "tools",
  REFUSED: "refused",
  FINAL: "final",
  REPAIR: "repair",
  INVALID: "invalid",
  MAX_TURNS: "max_turns",
});
export const CALL = Object.freeze({
  PENDING: "pending",
  RUNNING: "running",
  SUCCEEDED: "succeeded",
  FAILED: "failed",
  REFUSED: "refused",
  CANCELLED: "cancelled",
});
export const RUN_STATUSES = ["pending", "awaiting_approval", "running", "paused", "succeeded", "failed", "cancelled"];
export const STEP_STATUSES = ["pending", "running", "succeeded", "failed", "skipped", "replaced", "cancelled"];
export const ATTEMPT_STATUSES = ["running", "succeeded", "failed", "lost", "revoked", "cancelled", "superseded"];
export const TERMINAL_RUN = new Set(["succeeded", "failed", "cancelled"]);
export const WAITING_RUN = new Set(["awaiting_approval", "paused"]);
export const FINAL_STEP = new Set(["succeeded", "failed", "skipped", "replaced"]);
export const EARNED_STEP = new Set(["succeeded", "skipped"]);
