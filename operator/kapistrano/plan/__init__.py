"""Pure rollout decisions: no I/O, no clock, no SSH or Kubernetes imports."""

from kapistrano.plan.budget import max_unavailable
from kapistrano.plan.model import Action, ActionKind, HostObservation, Plan, PlanInput
from kapistrano.plan.planner import plan

__all__ = ["Action", "ActionKind", "HostObservation", "Plan", "PlanInput", "max_unavailable", "plan"]
