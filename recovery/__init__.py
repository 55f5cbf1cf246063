"""Recovery: knowledge distillation of a pruned model from its dense teacher, in memory
(`distill_model`) or on files (`recover`). Beside `gprune`, not inside it: it trains any
student against any teacher and reads nothing of the pruning internals (docs/ARCHITECTURE.md)."""
