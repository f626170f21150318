// Command promql parses PromQL expressions with Prometheus' own parser and prints the metric
// names each one reads, so the tests can check every name in the alerting rules and the
// dashboard against what the operator and vLLM serve.
//
// Usage:
//
//	promql < expressions
//
// Expressions come on stdin as JSON strings, one per line. Each result is one JSON line
// {"metrics": ["name", ...]} (the vector and matrix selectors' names, sorted, without
// duplicates), or {"error": ...} for an expression that does not parse, or one that selects
// series without naming the metric; the exit status is 1 when any expression failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// promQL parses as the Prometheus server does by default (no experimental functions).
var promQL = parser.NewParser(parser.Options{})

type output struct {
	Metrics []string `json:"metrics"`
	Error   string   `json:"error,omitempty"`
}

// names are the metric names the expression's selectors read.
func names(expr parser.Expr) ([]string, error) {
	seen := map[string]bool{}
	var missing error
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		selector, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := selector.Name
		for _, m := range selector.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			missing = fmt.Errorf("a selector without a metric name: %s", selector)
			return nil
		}
		seen[name] = true
		return nil
	})
	out := make([]string, 0, len(seen))
	for name := range seen {
		out = append(out, name)
	}
	sort.Strings(out)
	return out, missing
}

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	ok := true
	for scanner.Scan() {
		if len(scanner.Bytes()) == 0 {
			continue
		}
		var text string
		res := output{Metrics: []string{}}
		err := json.Unmarshal(scanner.Bytes(), &text)
		if err == nil {
			var expr parser.Expr
			if expr, err = promQL.ParseExpr(text); err == nil {
				res.Metrics, err = names(expr)
			}
		}
		if err != nil {
			ok = false
			res.Error = err.Error()
		}
		_ = enc.Encode(res)
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "promql: reading expressions: %v\n", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}
