//! Plain aligned columns for listings: readable in a terminal and in a scheduler's log.

use comfy_table::{ContentArrangement, presets};

pub struct Table(comfy_table::Table);

impl Table {
    pub fn new<const N: usize>(header: [&str; N]) -> Self {
        let mut table = comfy_table::Table::new();
        table
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(header);
        Self(table)
    }

    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.0.add_row(cells);
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The preset pads each line with a space on both sides; the log does not need them.
        for line in self.0.lines() {
            writeln!(f, "{}", line.trim_end().strip_prefix(' ').unwrap_or(&line))?;
        }
        Ok(())
    }
}
