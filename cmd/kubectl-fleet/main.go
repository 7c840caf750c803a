// Command kubectl-fleet is the kubectl plugin for jobset-fleet
// (`kubectl fleet ...`): read-only views of the fleet from the hub.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/jobset-fleet/jobset-fleet/fleetctl"
)

func main() {
	os.Exit(fleetctl.Main(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, os.Args[1:]))
}
