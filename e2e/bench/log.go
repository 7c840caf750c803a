package main

import (
	"fmt"
	"os"
	"time"
)

// logf prints a progress line with the time of day.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
