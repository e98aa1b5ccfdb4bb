// Command otelcol-tracescrub is an OpenTelemetry Collector distribution with
// the tracescrub processor, the OTLP receiver and exporters, and contrib's
// filter, transform and redaction processors for comparison.
//
// Written in the shape the collector builder generates (main.go +
// components.go), so a team can regenerate it with the builder instead.
package main

import (
	"log"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

func main() {
	if err := run(settings()); err != nil {
		log.Fatal(err)
	}
}

// settings are the distribution's collector settings, as the builder
// generates them.
func settings() otelcol.CollectorSettings {
	info := component.BuildInfo{
		Command:     "otelcol-tracescrub",
		Description: "OpenTelemetry Collector with the tracescrub processor",
		Version:     "0.1.0",
	}

	return otelcol.CollectorSettings{
		BuildInfo: info,
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
				DefaultScheme: "env",
			},
		},
	}
}

func runInteractive(params otelcol.CollectorSettings) error {
	cmd := otelcol.NewCommand(params)
	if err := cmd.Execute(); err != nil {
		log.Fatalf("collector server run finished with error: %v", err)
	}
	return nil
}

func run(params otelcol.CollectorSettings) error {
	return runInteractive(params)
}
