//! Process data: PDO assignment and mapping, and the logical process image.
