package fleetctl

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/jobset-fleet/jobset-fleet/api"
)

// Output formats, as kubectl names them.
const (
	outputDefault = ""
	outputWide    = "wide"
	outputJSON    = "json"
	outputYAML    = "yaml"
)

func addOutputFlag(cmd *cobra.Command, target *string) {
	cmd.Flags().StringVarP(target, "output", "o", "", "Output format: wide, json or yaml.")
}

func checkOutput(format string) error {
	switch format {
	case outputDefault, outputWide, outputJSON, outputYAML:
		return nil
	}
	return fmt.Errorf("unknown output format %q: want wide, json or yaml", format)
}

// printTable prints a table as kubectl does; wide shows the columns of
// priority 1, withNamespace prefixes the rows' objects' namespaces.
func printTable(t *metav1.Table, wide, withNamespace bool, w io.Writer) error {
	if len(t.Rows) == 0 {
		return nil
	}
	return printers.NewTablePrinter(printers.PrintOptions{Wide: wide, WithNamespace: withNamespace}).PrintObj(t, w)
}

// printObject prints an object as json or yaml, with its kind set from
// the fleet's scheme unless it has one.
func printObject(obj runtime.Object, format string, w io.Writer) error {
	var p printers.ResourcePrinter = &printers.JSONPrinter{}
	if format == outputYAML {
		p = &printers.YAMLPrinter{}
	}
	if obj.GetObjectKind().GroupVersionKind().Empty() {
		p = printers.NewTypeSetter(api.NewScheme()).ToPrinter(p)
	}
	return p.PrintObj(obj, w)
}
