"""What a person reads: figures and the HTML/Markdown run report."""
