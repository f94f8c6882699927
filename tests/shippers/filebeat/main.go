// Filebeat OSS (Apache-2.0) at the release go.mod pins, for estrom's tests (`make shippers`): the
// filebeat command with its default inputs, as the beats repository's filebeat/main.go builds
// it. go.mod carries the replace directives of beats' own go.mod, which Go applies only in the
// main module.
package main

import (
	"os"

	"github.com/elastic/beats/v7/filebeat/cmd"
	inputs "github.com/elastic/beats/v7/filebeat/input/default-inputs"
)

func main() {
	if err := cmd.Filebeat(inputs.Init, cmd.FilebeatSettings()).Execute(); err != nil {
		os.Exit(1)
	}
}
