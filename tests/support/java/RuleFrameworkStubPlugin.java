/*
 * Stands in for OpenSearch's "rule-framework" module (modules/autotagging-commons upstream),
 * which the OpenSearch security plugin lists in extended.plugins and which neither the integ-test
 * distribution ships nor Maven Central serves. The security plugin only touches the framework
 * through service-loaded extensions (principal attributes for rule-based auto-tagging); with
 * this empty extensible plugin nothing loads them, and the rest of the plugin works. The
 * framework's own dependency (commons-collections4, which the security plugin also uses) is
 * placed next to this jar.
 *
 * Built by es_neural/engines/opensearch_security.py with the JDK's javac against the installed
 * server jars, as a module of a private install (never the shared one).
 */
package org.esneural.rulestub;

import org.opensearch.plugins.ExtensiblePlugin;
import org.opensearch.plugins.Plugin;

public final class RuleFrameworkStubPlugin extends Plugin implements ExtensiblePlugin {}
