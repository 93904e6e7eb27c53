//! Rules: the rule language, the embedded default pack, evaluation.
//! Pure logic, no BPF.
