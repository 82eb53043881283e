//! The README's limits table ("Limits, each with a clear error."), read for the tests
//! that hold each binary's `Limits` to it.

/// The default cell of the row whose first cell is `limit`, in `readme`'s limits table;
/// panics (these are tests' checks) when there is none.
pub fn row(readme: &str, limit: &str) -> String {
    find(readme, limit).unwrap_or_else(|| panic!("the README's limits table has no row {limit:?}"))
}

fn find(readme: &str, limit: &str) -> Option<String> {
    let table = readme.split("**Limits, each with a clear error.**").nth(1)?;
    table.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')).find_map(|l| {
        let cells: Vec<&str> = l.split('|').map(str::trim).collect();
        (cells.get(1) == Some(&limit)).then(|| cells.get(2).unwrap_or(&"").to_string())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_row_of_the_table_only() {
        let readme = "| x | 1 | a |\n**Limits, each with a clear error.**\n\ntext\n\n| limit | default | past it |\n|---|---|---|\n| x | 2 | b |\n\n| y | 3 | c |\n";
        assert_eq!(super::row(readme, "x"), "2");
        assert_eq!(super::find(readme, "y"), None, "after the table");
        assert_eq!(super::find("no table", "x"), None);
    }
}
