"""PLE (Progressive Layered Extraction, Tang et al., RecSys 2020) on
Census-Income: task-specific and shared experts in Customized Gate Control
layers, stacked so that each level extracts from the one below."""
