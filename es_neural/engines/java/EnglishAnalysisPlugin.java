/*
 * The "english" analyzer, for engine distributions that lack the analysis-common module (the
 * Elasticsearch integ-test distribution that `es-neural engines up` installs): the same analyzer
 * users' clusters have, so BM25 over es-neural indices is measured the way users run it.
 *
 * Lucene's own EnglishAnalyzer (standard tokenizer, English possessive filter, lowercase, English
 * stop words, keyword marker for `stem_exclusion`, Porter stemmer), configured as analysis-common's
 * EnglishAnalyzerProvider does: `stopwords` / `stopwords_path` (default `_english_`) and
 * `stem_exclusion`. Registered under the name "english", so a field mapping `"analyzer":
 * "english"`, an index analyzer `{"type": "english", ...}` and `POST _analyze {"analyzer":
 * "english"}` all work.
 *
 * Written against Elasticsearch. es_neural/engines/analysis.py compiles it with the JDK's javac
 * against the install's own jars (lucene-analysis-common is one of them) into a module of the
 * install; for OpenSearch it first replaces the `org.elasticsearch.` package prefix by
 * `org.opensearch.` (the classes used here have the same names and signatures in both). Never
 * installed next to analysis-common, which registers "english" itself.
 */
package org.esneural.englishanalysis;

import java.util.Map;

import org.apache.lucene.analysis.CharArraySet;
import org.apache.lucene.analysis.Analyzer;
import org.apache.lucene.analysis.en.EnglishAnalyzer;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.index.analysis.Analysis;
import org.elasticsearch.index.analysis.AnalyzerProvider;
import org.elasticsearch.index.analysis.AnalyzerScope;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;

public class EnglishAnalysisPlugin extends Plugin implements AnalysisPlugin {

    @Override
    public Map<String, AnalysisProvider<AnalyzerProvider<? extends Analyzer>>> getAnalyzers() {
        return Map.of("english", (indexSettings, env, name, settings) -> new English(name, env, settings));
    }

    /** The analyzer provider: one EnglishAnalyzer per index (or per global use). */
    static final class English implements AnalyzerProvider<EnglishAnalyzer> {
        private final String name;
        private final EnglishAnalyzer analyzer;

        English(String name, Environment env, Settings settings) {
            this.name = name;
            CharArraySet stopWords = Analysis.parseStopWords(env, settings, EnglishAnalyzer.getDefaultStopSet());
            CharArraySet stemExclusion = Analysis.parseStemExclusion(settings, CharArraySet.EMPTY_SET);
            this.analyzer = new EnglishAnalyzer(stopWords, stemExclusion);
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public AnalyzerScope scope() {
            return AnalyzerScope.INDEX;
        }

        @Override
        public EnglishAnalyzer get() {
            return analyzer;
        }
    }
}
