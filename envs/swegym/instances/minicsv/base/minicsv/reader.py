"""Split CSV lines into fields and rows into records."""


def parse_line(line: str, sep: str = ",") -> list[str]:
    """The fields of one CSV line; a field in double quotes may hold `sep`, and "" stands for one quote."""
    fields: list[str] = []
    current = ""
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            fields.append(current)
            current = ""
        else:
            current += char
    fields.append(current)
    return fields


def read_records(text: str, sep: str = ",") -> list[dict[str, str]]:
    """One dict per row of `text`, keyed by the header line's fields."""
    lines = text.split("\n")
    header = parse_line(lines[0], sep)
    records = []
    for number, line in enumerate(lines[1:], start=2):
        values = parse_line(line, sep)
        if len(values) != len(header):
            raise ValueError(f"line {number} has {len(values)} fields, the header has {len(header)}")
        records.append(dict(zip(header, values)))
    return records
