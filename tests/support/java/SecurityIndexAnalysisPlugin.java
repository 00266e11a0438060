/*
 * The analysis components that Elasticsearch's .security index mapping names and that the
 * integ-test distribution lacks (they live in the analysis-common module, which that
 * distribution does not ship and Elastic does not publish): the "uax_url_email" tokenizer and the
 * "pattern_capture" and "unique" token filters. Without them the .security index cannot be
 * created, so native users, roles and API keys cannot be stored.
 *
 * Built by es_neural/engines/security.py with the JDK's javac against the installed server jars
 * and placed as a module of a private install (never the shared one). Implementations are
 * Lucene's (UAX29URLEmailTokenizer, PatternCaptureGroupTokenFilter) plus a few lines for
 * "unique" (drop a token seen before in the same stream, as analysis-common does by default).
 */
package org.esneural.securityanalysis;

import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

import org.apache.lucene.analysis.CharArraySet;
import org.apache.lucene.analysis.TokenFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.apache.lucene.analysis.pattern.PatternCaptureGroupTokenFilter;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.apache.lucene.analysis.tokenattributes.PositionIncrementAttribute;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.index.analysis.TokenFilterFactory;
import org.elasticsearch.index.analysis.TokenizerFactory;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;

public class SecurityIndexAnalysisPlugin extends Plugin implements AnalysisPlugin {

    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        return Map.of(
            "uax_url_email",
            (indexSettings, env, name, settings) -> TokenizerFactory.newFactory(name, UAX29URLEmailTokenizer::new)
        );
    }

    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        return Map.of(
            "pattern_capture",
            AnalysisPlugin.requiresAnalysisSettings((indexSettings, env, name, settings) -> patternCapture(name, settings)),
            "unique",
            (indexSettings, env, name, settings) -> factory(name, Unique::new)
        );
    }

    private static TokenFilterFactory patternCapture(String name, Settings settings) {
        List<String> regexes = settings.getAsList("patterns");
        if (regexes.isEmpty()) {
            throw new IllegalArgumentException("pattern_capture filter [" + name + "] needs [patterns]");
        }
        Pattern[] patterns = regexes.stream().map(Pattern::compile).toArray(Pattern[]::new);
        boolean preserveOriginal = settings.getAsBoolean("preserve_original", true);
        return factory(name, in -> new PatternCaptureGroupTokenFilter(in, preserveOriginal, patterns));
    }

    private static TokenFilterFactory factory(String name, java.util.function.Function<TokenStream, TokenStream> make) {
        return new TokenFilterFactory() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public TokenStream create(TokenStream tokenStream) {
                return make.apply(tokenStream);
            }
        };
    }

    /** Drops tokens whose text was already seen in this stream. */
    static final class Unique extends TokenFilter {
        private final CharArraySet seen = new CharArraySet(8, false);
        private final CharTermAttribute term = addAttribute(CharTermAttribute.class);
        private final PositionIncrementAttribute position = addAttribute(PositionIncrementAttribute.class);

        Unique(TokenStream in) {
            super(in);
        }

        @Override
        public boolean incrementToken() throws IOException {
            int skipped = 0;
            while (input.incrementToken()) {
                char[] text = new char[term.length()];
                System.arraycopy(term.buffer(), 0, text, 0, text.length);
                if (seen.contains(text, 0, text.length)) {
                    skipped += position.getPositionIncrement();
                    continue;
                }
                seen.add(text);
                position.setPositionIncrement(position.getPositionIncrement() + skipped);
                return true;
            }
            return false;
        }

        @Override
        public void reset() throws IOException {
            super.reset();
            seen.clear();
        }
    }
}
